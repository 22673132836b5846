import { describe, expect, it } from 'vitest';
import { circuitBreakerSettingsSchema } from './config-schema.js';
import { CIRCUIT_BREAKER_DEFAULTS, CONNECTION_POOL_DEFAULTS, L7_LIMITS_DEFAULTS } from './defaults.js';
import { connectionPoolSchema, l7LimitsSchema } from './l7-config-schema.js';

// The data path falls back on these constants without importing zod; a field added to a schema must be added here too.
describe('schema-free defaults', () => {
  it('equal what the schemas fill in for an empty object, field for field', () => {
    expect(connectionPoolSchema.parse({})).toEqual(CONNECTION_POOL_DEFAULTS);
    expect(l7LimitsSchema.parse({})).toEqual(L7_LIMITS_DEFAULTS);
    expect(circuitBreakerSettingsSchema.parse({})).toEqual(CIRCUIT_BREAKER_DEFAULTS);
  });
});
