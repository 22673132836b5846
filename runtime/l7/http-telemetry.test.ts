import { describe, expect, it } from 'vitest';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { HttpTelemetry, peerLabels } from './http-telemetry.js';

describe('HttpTelemetry.record', () => {
  it('counts each request in the series of its code, flags and gRPC status, whatever the previous request was', () => {
    const telemetry = HttpTelemetry.for(new MetricsRegistry());
    const peer = peerLabels({ protocol: 'http' });
    const other = peerLabels({ protocol: 'grpc' });
    const calls: [number, string, string][] = [
      [200, '-', '-'], [200, '-', '-'], [503, 'UO', '-'], [200, '-', '-'], [503, 'UF', '-'], [503, 'UF', '-'],
      [200, '-', '0'], [200, '-', '14'], [200, '-', '0'], [200, '-', '-'],
    ];
    for (const [code, flags, grpc] of calls) telemetry.record(peer, code, flags, grpc, 1, 10, 20);
    // Another peer between two requests of the first must not share the first one's last series.
    telemetry.record(other, 200, '-', '-', 1, 10, 20);
    telemetry.record(peer, 200, '-', '-', 1, 10, 20);
    const count = (code: string, flags: string, grpc: string, protocol = 'http'): number =>
      telemetry.count({ request_protocol: protocol, response_code: code, response_flags: flags, grpc_response_status: grpc });
    expect(count('200', '-', '')).toBe(5);
    expect(count('503', 'UO', '')).toBe(1);
    expect(count('503', 'UF', '')).toBe(2);
    expect(count('200', '-', '0')).toBe(2);
    expect(count('200', '-', '14')).toBe(1);
    expect(count('200', '-', '', 'grpc')).toBe(1);
  });

  it('renders the counted series on a scrape, with byte and duration histograms', async () => {
    const metrics = new MetricsRegistry();
    const telemetry = HttpTelemetry.for(metrics);
    const peer = peerLabels({ protocol: 'http' });
    telemetry.record(peer, 404, 'NR', '-', 3, 100, 2000);
    telemetry.record(peer, 404, 'NR', '-', 3, 100, 2000);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/istio_requests_total\{[^}]*response_code="404"[^}]*response_flags="NR"[^}]*\} 2/);
    expect(text).toMatch(/istio_response_bytes_sum\{[^}]*response_code="404"[^}]*\} 4000/);
  });
});
