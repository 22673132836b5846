// Unit tests of the retry decisions: retry_on conditions for answers and failures, and the backoff bounds.
import { describe, expect, it } from 'vitest';
import { backoffMs, isRetriableAnswer, isRetriableFailure } from './retry-policy.js';
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
  });

  it('keeps the jittered backoff within base × (2^n − 1)', () => {
    for (let i = 0; i < 200; i++) {
      expect(backoffMs(policy([]), 1)).toBeLessThanOrEqual(25);
      expect(backoffMs(policy([]), 3)).toBeLessThanOrEqual(175);
    }
  });
});
