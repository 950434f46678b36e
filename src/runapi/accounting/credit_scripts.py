"""The Lua scripts behind `RedisCreditGuard`: each one step, atomic on the Redis server.

Amounts travel as decimal integer strings and are compared as Lua numbers, exact up to
2**53 nano-dollars. Times are Redis's own clock (`TIME`), the same for every instance.
"""

HEAD = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local function int(x) return string.format('%d', x) end
local function neg(s) return int(-tonumber(s)) end
local function drop(s, h, d, id)  -- close hold `id`: no longer held, no longer due
  local amount = redis.call('HGET', h, id)
  if amount then
    redis.call('HDEL', h, id)
    redis.call('HINCRBY', s, 'held', neg(amount))
  end
  redis.call('ZREM', d, id)
end
"""

# KEYS: state, holds, deadlines. ARGV: hold ID, amount, ttl ms.
# Returns {0 granted | 1 not loaded | 2 stale | 3 wait | 4 short, free credit or ms to wait, spent}:
# `spent` is Σ the charges SETTLE has recorded for the account, by any instance (the spend caps'
# sign that other instances charged it: `RedisCreditGuard.charges_by_others`).
RESERVE = HEAD + """
local s, h, d = KEYS[1], KEYS[2], KEYS[3]
local st = redis.call('HMGET', s, 'bal', 'held', 'charged', 'stale', 'ready', 'spent')
local spent = st[6] or '0'  -- a string: exact past 2**53
if not st[1] then return {1, 0, spent} end
local expired = redis.call('ZRANGEBYSCORE', d, '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do drop(s, h, d, id) end
if #expired > 0 then
  redis.call('HSET', s, 'stale', '1')
  return {2, 0, spent}
end
if st[4] == '1' then return {2, 0, spent} end
local ready = tonumber(st[5] or '0')
if now < ready then return {3, ready - now, spent} end
local free = tonumber(st[1]) - tonumber(st[2] or '0') - tonumber(st[3] or '0')
if redis.call('HEXISTS', h, ARGV[1]) == 1 then return {0, free, spent} end
if free < tonumber(ARGV[2]) then return {4, free, spent} end
redis.call('HSET', h, ARGV[1], ARGV[2])
redis.call('ZADD', d, now + tonumber(ARGV[3]), ARGV[1])
redis.call('HINCRBY', s, 'held', ARGV[2])
return {0, free - tonumber(ARGV[2]), spent}
"""

# KEYS: state, holds, deadlines, charged. ARGV: per hold closed, its ID, its ledger entry ID ('' when
# released) and its charge; a charge recorded for the first time also adds to `spent`. Returns the
# number of charged entries (the caller reloads the account when there are many).
SETTLE = HEAD + """
local s, h, d, c = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local loaded = redis.call('HEXISTS', s, 'bal') == 1
for i = 1, #ARGV, 3 do
  local id, entry, charge = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  drop(s, h, d, id)
  if entry ~= '' and tonumber(charge) > 0 and loaded then
    if redis.call('HSETNX', c, entry, charge) == 1 then
      redis.call('HINCRBY', s, 'charged', charge)
      redis.call('HINCRBY', s, 'spent', charge)
    end
  end
end
return redis.call('HLEN', c)
"""

# KEYS: state, holds, deadlines. ARGV: hold ID, extra. Grows an open hold by min(extra, free credit)
# for a call that cost more than its hold. Returns {0 grown | 1 no such hold (expired, or Redis lost it)
# or not loaded | 2 stale | 3 wait (Redis restarted: others' holds may be missing), amount granted}.
EXTEND = HEAD + """
local s, h, d = KEYS[1], KEYS[2], KEYS[3]
local amount = redis.call('HGET', h, ARGV[1])
if not amount or redis.call('HEXISTS', s, 'bal') == 0 then return {1, 0} end
local st = redis.call('HMGET', s, 'bal', 'held', 'charged', 'stale', 'ready')
if st[4] == '1' then return {2, 0} end
if now < tonumber(st[5] or '0') then return {3, 0} end
local free = tonumber(st[1]) - tonumber(st[2] or '0') - tonumber(st[3] or '0')
local grant = math.min(tonumber(ARGV[2]), free)
if grant <= 0 then return {0, 0} end
redis.call('HSET', h, ARGV[1], int(tonumber(amount) + grant))
redis.call('HINCRBY', s, 'held', int(grant))
return {0, grant}
"""

# KEYS: state, holds, deadlines. ARGV: ttl ms, then hold ID and amount pairs. Renews the
# deadlines of this instance's open holds, and adds back any that Redis lost.
REASSERT = HEAD + """
local s, h, d = KEYS[1], KEYS[2], KEYS[3]
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', h, ARGV[i], ARGV[i + 1]) == 1 then redis.call('HINCRBY', s, 'held', ARGV[i + 1]) end
  redis.call('ZADD', d, now + tonumber(ARGV[1]), ARGV[i])
end
return 1
"""

# KEYS: state, charged, lock. ARGV: lock token, ledger balance, ready ms (0: none), then the
# charged entry IDs that balance includes. Returns {0 loaded | 1 lock lost, free credit}.
LOAD = HEAD + """
local s, c, lock = KEYS[1], KEYS[2], KEYS[3]
if redis.call('GET', lock) ~= ARGV[1] then return {1, 0} end
for i = 4, #ARGV do
  local amount = redis.call('HGET', c, ARGV[i])
  if amount then
    redis.call('HDEL', c, ARGV[i])
    redis.call('HINCRBY', s, 'charged', neg(amount))
  end
end
redis.call('HSET', s, 'bal', ARGV[2])
redis.call('HDEL', s, 'stale')
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', s, 'ready') or '0') then redis.call('HSET', s, 'ready', ARGV[3]) end
redis.call('DEL', lock)
local st = redis.call('HMGET', s, 'held', 'charged')
return {0, tonumber(ARGV[2]) - tonumber(st[1] or '0') - tonumber(st[2] or '0')}
"""

# KEYS: boot marker. ARGV: a new token. Returns {marker "<ms>:<token>", now ms}; sets it if absent.
BOOT = HEAD + """
local v = redis.call('GET', KEYS[1])
if not v then
  v = int(now) .. ':' .. ARGV[1]
  redis.call('SET', KEYS[1], v)
end
return {v, now}
"""

UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
