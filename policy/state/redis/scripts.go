package redis

import goredis "github.com/redis/go-redis/v9"

// The scripts that make a decision one atomic step on the server. KEYS come
// in pairs per counter: its bucket hash, then its reservations' sorted set.
// Bucket indexes are the caller's (state.BucketOf, state.Oldest), so that
// the Lua side never computes with nanoseconds, which its doubles cannot
// hold exactly.

// A counter's hash holds its window ("w", ns), the committed units in its
// live buckets ("t"), the lowest bucket index that may still be in it
// ("o"), and one field per bucket. trim, shared by the scripts below, drops
// the buckets that left the window, once per bucket width, not per unit,
// and returns the live total.
const trimLua = `
local function trim(c, oldest, o, t)
  t = tonumber(t or '0')
  o = tonumber(o)
  if not o or o >= oldest then return t end
  local all = redis.call('HGETALL', c)
  local low = nil
  for j = 1, #all, 2 do
    local f = all[j]
    if f ~= 'w' and f ~= 't' and f ~= 'o' then
      local idx = tonumber(f)
      if idx < oldest then
        t = t - tonumber(all[j+1])
        redis.call('HDEL', c, f)
      elseif not low or idx < low then
        low = idx
      end
    end
  end
  redis.call('HSET', c, 't', t, 'o', low or oldest)
  return t
end
`

// reserveScript admits units: for each request of a batch, one unit
// against every counter of the request or none, the requests one after the
// other as if each were a script of its own.
//
//	ARGV[1] requests q, ARGV[2] now (unix ms), ARGV[3] the reservations'
//	lapse (unix ms), ARGV[4] the reservations' key TTL (ms); then per
//	request: its member name, its counters n, and per counter: window
//	(ns), limit, soft (0|1), oldest bucket index in the window, the
//	counter's key TTL (ms). KEYS: per request, per counter its hash and
//	its sorted set.
//
// Replies one reply per request: {1, over...} (admitted; the soft counters
// it took past their limit, 0-based), {0, i, used} (refused by hard
// counter i), or {"rebucket", i} when counter i was last written under
// another window.
var reserveScript = goredis.NewScript(trimLua + `
local now, lapse, rttl = ARGV[2], ARGV[3], ARGV[4]
local function reserve(k, a, n, member)
  local used, fresh = {}, {}
  for i = 1, n do
    local c, r, b = KEYS[k+2*i-2], KEYS[k+2*i-1], a + (i-1)*5
    local h = redis.call('HMGET', c, 'w', 'o', 't')
    if h[1] and h[1] ~= ARGV[b] then return {'rebucket', i-1} end
    fresh[i] = not h[1]
    local u = trim(c, tonumber(ARGV[b+3]), h[2], h[3]) + redis.call('ZCOUNT', r, '(' .. now, '+inf')
    if ARGV[b+2] ~= '1' and u + 1 > tonumber(ARGV[b+1]) then
      return {0, i-1, u}
    end
    used[i] = u
  end
  local out = {1}
  for i = 1, n do
    local c, r, b = KEYS[k+2*i-2], KEYS[k+2*i-1], a + (i-1)*5
    redis.call('ZADD', r, lapse, member)
    redis.call('PEXPIRE', r, rttl)
    if fresh[i] then
      redis.call('HSET', c, 'w', ARGV[b])
      redis.call('PEXPIRE', c, ARGV[b+4])
    end
    if ARGV[b+2] == '1' and used[i] + 1 > tonumber(ARGV[b+1]) then
      out[#out+1] = i-1
    end
  end
  return out
end
local replies = {}
local a, k = 5, 1
for x = 1, tonumber(ARGV[1]) do
  local member, n = ARGV[a], tonumber(ARGV[a+1])
  replies[x] = reserve(k, a + 2, n, member)
  a = a + 2 + 5*n
  k = k + 2*n
end
return replies
`)

// commitScript counts units: for each request of a batch (one message's
// reservations), all of its units or none, the requests one after the
// other.
//
//	ARGV[1] requests q; then per request: its counters k, the number of
//	arguments that follow for it, and per counter: window (ns), bucket
//	index of now, key TTL (ms), units u, then the u reservations'
//	members. KEYS: per request, per counter its hash and its sorted set.
//
// Replies one reply per request: {1}, {"unknown", i} (a unit held against
// its counter i is not held: committed, released or lapsed) or
// {"rebucket", i}.
var commitScript = goredis.NewScript(`
local function commit(kk, b, k)
  local spans = {}
  for i = 1, k do
    local c, r = KEYS[kk+2*i-2], KEYS[kk+2*i-1]
    local u = tonumber(ARGV[b+3])
    local members = {}
    for j = 1, u do members[j] = ARGV[b+3+j] end
    for _, sc in ipairs(redis.call('ZMSCORE', r, unpack(members))) do
      if not sc then return {'unknown', i-1} end
    end
    local h = redis.call('HMGET', c, 'w', 'o')
    if h[1] and h[1] ~= ARGV[b] then return {'rebucket', i-1} end
    spans[i] = {b, u, members, h[1], h[2]}
    b = b + 4 + u
  end
  for i = 1, k do
    local c, r = KEYS[kk+2*i-2], KEYS[kk+2*i-1]
    local s = spans[i]
    local at, u = s[1], s[2]
    redis.call('ZREM', r, unpack(s[3]))
    redis.call('HINCRBY', c, ARGV[at+1], u)
    redis.call('HINCRBY', c, 't', u)
    if not s[4] then redis.call('HSET', c, 'w', ARGV[at]) end
    if not s[5] or tonumber(ARGV[at+1]) < tonumber(s[5]) then redis.call('HSET', c, 'o', ARGV[at+1]) end
    redis.call('PEXPIRE', c, ARGV[at+2])
  end
  return {1}
end
local replies = {}
local a, kk = 2, 1
for x = 1, tonumber(ARGV[1]) do
  local k, n = tonumber(ARGV[a]), tonumber(ARGV[a+1])
  replies[x] = commit(kk, a + 2, k)
  a = a + 2 + n
  kk = kk + 2*k
end
return replies
`)

// releaseScript gives reservations back, all or none: KEYS are the
// reservations' sorted sets, ARGV the member of each.
var releaseScript = goredis.NewScript(`
for i = 1, #KEYS do
  if not redis.call('ZSCORE', KEYS[i], ARGV[i]) then return 0 end
end
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i])
end
return 1
`)

// usageScript reads one counter: KEYS its hash and sorted set; ARGV window
// (ns), oldest bucket index, now (unix ms). Replies {committed, reserved}
// or {"rebucket"}; a counter never written replies {0, 0}.
var usageScript = goredis.NewScript(trimLua + `
local h = redis.call('HMGET', KEYS[1], 'w', 'o', 't')
if h[1] and h[1] ~= ARGV[1] then return {'rebucket'} end
return {trim(KEYS[1], tonumber(ARGV[2]), h[2], h[3]), redis.call('ZCOUNT', KEYS[2], '(' .. ARGV[3], '+inf')}
`)

// expireScript trims one counter and drops its lapsed reservations: KEYS
// its hash and sorted set; ARGV oldest bucket index, now (unix ms).
var expireScript = goredis.NewScript(trimLua + `
local h = redis.call('HMGET', KEYS[1], 'o', 't')
trim(KEYS[1], tonumber(ARGV[1]), h[1], h[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
return 1
`)

// addComplaintScript records a complaint once per report.
//
//	KEYS[1] report hash, KEYS[2] all complaints by time, KEYS[3] the
//	account's complaints by time; ARGV report id, score (unix µs), the
//	complaint as JSON.
var addComplaintScript = goredis.NewScript(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return 1
`)

// forgetComplaintsScript drops up to ARGV[2] complaints received before
// ARGV[1] (unix µs, exclusive) and replies how many it dropped. KEYS[1]
// report hash, KEYS[2] all by time; ARGV[3] the prefix of the per-account
// sets (their keys are built here: they share the hash slot of the
// others).
var forgetComplaintsScript = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then
    local c = cjson.decode(raw)
    redis.call('ZREM', ARGV[3] .. c.account, id)
    redis.call('HDEL', KEYS[1], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
return #ids
`)

// forgetAttributionsScript drops up to ARGV[2] queue ids remembered before
// ARGV[1] (unix µs, exclusive) and replies how many. KEYS[1] the id hash,
// KEYS[2] the ids by time.
var forgetAttributionsScript = goredis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
return #ids
`)

// accountScript reads accounts' standings, each in one step, for a batch
// of requests. KEYS[1] the flags, KEYS[2] the reports, then per request
// the account's complaints by time; ARGV[1] requests q, then per request
// the account and the lowest score. Replies per request {flag or "", id,
// report, id, report...}.
var accountScript = goredis.NewScript(`
local replies = {}
for x = 1, tonumber(ARGV[1]) do
  local account, since = ARGV[2*x], ARGV[2*x+1]
  local out = {redis.call('HGET', KEYS[1], account) or ''}
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2+x], since, '+inf')
  for _, id in ipairs(ids) do
    out[#out+1] = id
    out[#out+1] = redis.call('HGET', KEYS[2], id) or ''
  end
  replies[x] = out
end
return replies
`)

// rememberScript records queue ids for a batch of requests. KEYS[1] the
// id hash, KEYS[2] the ids by time; ARGV[1] requests q, then per request
// the queue id, its record ("unix-ns account") and its score (unix µs).
// Replies {1} per request.
var rememberScript = goredis.NewScript(`
local replies = {}
for x = 1, tonumber(ARGV[1]) do
  local a = 3*x - 1
  redis.call('HSET', KEYS[1], ARGV[a], ARGV[a+1])
  redis.call('ZADD', KEYS[2], ARGV[a+2], ARGV[a])
  replies[x] = {1}
end
return replies
`)
