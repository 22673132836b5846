/** The grant step both Redis limit scripts share: given `avail`, `hits` and ARGV[4] (min grant, for leases), sets `granted` and `allowed`. */

/**
 * Strict decisions take all `hits` or nothing; lease requests (min grant > 0) take what is available down to the
 * minimum. A zero-hit call is a check and always "allowed". Interpolated into FIXED_WINDOW_LUA and GCRA_LUA.
 */
export const GRANT_LUA = `local min_grant = tonumber(ARGV[4])
local granted = hits
if min_grant > 0 then
  if avail < granted then granted = avail end
  if granted < min_grant then granted = 0 end
elseif hits > avail then
  granted = 0
end
local allowed = 0
if granted > 0 or hits == 0 then allowed = 1 end
`;
