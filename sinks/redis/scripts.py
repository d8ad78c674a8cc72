"""Lua scripts: compare-and-set by version, then publish, all server-side so
one round trip writes a whole batch and a replay can never move a value
backwards."""

# KEYS[i]: hash key. ARGV[1]: a JSON array holding, per key, an array of 7
# strings: version, price, ts, provider, currency, channel, message. One
# argument for the whole batch: encoding thousands of separate arguments cost
# the client more than the script costs the server. Writes only when version
# is newer; publishes what it wrote.
PRICE_CAS = """
local rows = cjson.decode(ARGV[1])
local written = 0
for i, key in ipairs(KEYS) do
  local row = rows[i]
  local version = tonumber(row[1])
  local current = tonumber(redis.call('HGET', key, 'version') or '-1')
  if version > current then
    redis.call('HSET', key, 'version', row[1], 'price', row[2], 'ts', row[3],
               'provider', row[4], 'currency', row[5])
    redis.call('PUBLISH', row[6], row[7])
    written = written + 1
  end
end
return written
"""

# KEYS[i]: string key holding a JSON document; its version lives in the
# companion key KEYS[i] .. ':v' so the script never parses JSON.
# ARGV per key (3): version, document, channel ('' = no publish).
JSON_CAS = """
local written = 0
for i, key in ipairs(KEYS) do
  local a = (i - 1) * 3
  local version = tonumber(ARGV[a + 1])
  local current = tonumber(redis.call('GET', key .. ':v') or '-1')
  if version > current then
    redis.call('SET', key, ARGV[a + 2])
    redis.call('SET', key .. ':v', ARGV[a + 1])
    if ARGV[a + 3] ~= '' then
      redis.call('PUBLISH', ARGV[a + 3], ARGV[a + 2])
    end
    written = written + 1
  end
end
return written
"""
