// Unit tests of the retry decisions: retry_on conditions for answers and failures, and the backoff bounds.
import { describe, expect, it } from 'vitest';
import { answerVerdict, backoffMs, isRetriableAnswer, isRetriableFailure, retriesGrpcStatus, RetrySlot } from './retry-policy.js';
import { UpstreamCluster } from './upstream-cluster.js';
import type { RetryPolicy } from './route-table.js';

const policy = (on: string[], codes: number[] = [503]): RetryPolicy => ({ attempts: 3, perTryTimeoutMs: undefined, on: new Set(on), statusCodes: new Set(codes), budgetPercent: 20, minRetryConcurrency: 3, backoffBaseMs: 25 });

describe('retry policy', () => {
  it('matches answers by retry_on', () => {
    expect(isRetriableAnswer(policy(['5xx']), 500, '-')).toBe(true);
    expect(isRetriableAnswer(policy(['gateway-error']), 500, '-')).toBe(false);
    expect(isRetriableAnswer(policy(['gateway-error']), 504, '-')).toBe(true);
    expect(isRetriableAnswer(policy(['retriable-status-codes'], [418]), 418, '-')).toBe(true);
    expect(isRetriableAnswer(policy(['unavailable']), 200, '14')).toBe(true);
    expect(isRetriableAnswer(policy(['unavailable']), 200, '0')).toBe(false);
  });

  it('matches failures by retry_on, with 5xx and gateway-error covering resets and timeouts', () => {
    expect(isRetriableFailure(policy(['connect-failure']), 'connect-failure')).toBe(true);
    expect(isRetriableFailure(policy(['5xx']), 'connect-failure')).toBe(false);
    expect(isRetriableFailure(policy(['5xx']), 'reset')).toBe(true);
    expect(isRetriableFailure(policy(['gateway-error']), 'timeout')).toBe(true);
    expect(isRetriableFailure(policy(['retriable-status-codes']), 'reset')).toBe(false);
    expect(isRetriableFailure(policy(['refused-stream']), 'refused-stream')).toBe(true);
    expect(isRetriableFailure(policy(['connect-failure']), 'refused-stream')).toBe(false);
  });

  it('decides on an answer: retry while attempts remain and the request can go again, exhausted after', () => {
    const p = policy(['unavailable', 'retriable-status-codes']);
    expect(answerVerdict(p, 200, '14', 1, true)).toBe('retry');
    expect(answerVerdict(p, 503, '-', 3, true)).toBe('retry');
    expect(answerVerdict(p, 503, '-', 4, true)).toBe('exhausted');
    expect(answerVerdict(p, 503, '-', 1, false)).toBe('no');
    expect(answerVerdict(p, 200, '0', 1, true)).toBe('no');
    expect(answerVerdict(undefined, 503, '-', 1, true)).toBe('no');
    expect(retriesGrpcStatus(p)).toBe(true);
    expect(retriesGrpcStatus(policy(['5xx']))).toBe(false);
  });

  it('holds at most one retry-budget slot per request and gives it back', () => {
    const cluster = new UpstreamCluster('test');
    const p = { ...policy(['5xx']), budgetPercent: 0, minRetryConcurrency: 1 };
    const slot = new RetrySlot();
    expect(slot.take(cluster, p)).toBe(true);
    // The second retry of the same request reuses its slot instead of taking another.
    expect(slot.take(cluster, p)).toBe(true);
    expect(cluster.activeRetries).toBe(1);
    expect(new RetrySlot().take(cluster, p)).toBe(false);
    slot.release();
    slot.release();
    expect(cluster.activeRetries).toBe(0);
  });

  it('keeps the jittered backoff within base × (2^n − 1)', () => {
    for (let i = 0; i < 200; i++) {
      expect(backoffMs(policy([]), 1)).toBeLessThanOrEqual(25);
      expect(backoffMs(policy([]), 3)).toBeLessThanOrEqual(175);
    }
  });
});
