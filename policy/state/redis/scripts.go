package redis

import (
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

// The scripts that make a decision one atomic step on the server. Bucket
// indexes are the caller's (state.BucketOf, state.Oldest), so that the Lua
// side never computes with nanoseconds, which its doubles cannot hold
// exactly.
//
// A counter is one hash: its window ("w", ns), one field per bucket of
// committed units, the lowest bucket index that may still be in it ("o"),
// the total ("t") of its live buckets AND its reservations, and when Redis
// will drop it ("x", unix ms by Redis's clock). A reservation adds to "t";
// its commit moves it into a bucket (and leaves "t" alone); a release
// takes it off "t". Every reservation is also a member of one sorted set,
// the held set, scored by when it lapses; its name lists the counters it
// holds a unit against, so that sweep can give back the units of a daemon
// that died. Keeping "x" saves a PEXPIRE on most calls: a hash's TTL is
// renewed only when it would end before what the call needs.
//
// Each script reads a counter once per batch however many requests of the
// batch touch it (the cap: all of them), decides every request in Lua,
// and writes each counter once: what Redis spends on a script grows with
// the commands it calls.
const commonLua = `
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- trim drops the buckets that left the window, once per bucket width, not
-- per unit, and returns the new total.
local function trim(c, oldest, o, t)
  t = tonumber(t or '0')
  o = tonumber(o)
  if not o or o >= oldest then return t end
  local all = redis.call('HGETALL', c)
  local low = nil
  for j = 1, #all, 2 do
    local idx = tonumber(all[j])
    if idx then
      if idx < oldest then
        t = t - tonumber(all[j+1])
        redis.call('HDEL', c, all[j])
      elseif not low or idx < low then
        low = idx
      end
    end
  end
  redis.call('HSET', c, 't', t, 'o', low or oldest)
  return t
end
-- countersOf lists the hashes a reservation holds units against: its name
-- is "instance:id" then "|<length>:<counter key>" per counter.
local function countersOf(m, p)
  local out = {}
  local i = string.find(m, '|', 1, true)
  while i do
    local j = string.find(m, ':', i + 1, true)
    if not j then break end
    local n = tonumber(string.sub(m, i + 1, j - 1))
    if not n then break end
    out[#out+1] = p .. string.sub(m, j + 1, j + n)
    i = j + n + 1
    if string.sub(m, i, i) ~= '|' then break end
  end
  return out
end
-- sparesOf is how many spares a reservation holds besides its unit: its
-- name carries "#<spares>" before its counters when it has any.
local function sparesOf(m)
  local i = string.find(m, '|', 1, true) or (#m + 1)
  local j = string.find(string.sub(m, 1, i - 1), '#', 1, true)
  if not j then return 0 end
  return tonumber(string.sub(m, j + 1, i - 1)) or 0
end
-- giveBack takes a reservation's units (and its spares) off counter c.
local function giveBack(c, g)
  if redis.call('HEXISTS', c, 't') == 1 then
    redis.call('HINCRBY', c, 't', -1 - g)
    if g > 0 then redis.call('HINCRBY', c, 's', -g) end
  end
end
-- sweep gives back up to limit reservations that lapsed by now (unix ms).
local function sweep(held, now, p, limit)
  local gone = redis.call('ZRANGEBYSCORE', held, '-inf', now, 'LIMIT', 0, limit)
  for _, m in ipairs(gone) do
    local g = sparesOf(m)
    for _, c in ipairs(countersOf(m, p)) do giveBack(c, g) end
  end
  if #gone > 0 then redis.call('ZREM', held, unpack(gone)) end
end
-- renew sets a counter's TTL when Redis would drop it before need, and
-- adds the new "x" to f, the fields the caller writes.
local function renew(c, x, need, tnow, ttl, f)
  if tonumber(x or '0') < need then
    redis.call('PEXPIRE', c, ttl)
    f[#f+1] = 'x'
    f[#f+1] = tnow + tonumber(ttl)
  end
end
`

// sweepLimit bounds the lapsed reservations one script gives back.
const sweepLimit = 100

// reserveScript admits units: for each request of a batch, one unit
// against every counter of the request or none, the requests one after the
// other as if each were a script of its own. With the unit a request may
// take up to its spare units more, when all its counters are hard and
// each keeps an eighth of its limit (and at least 4) free after them; a
// counter's "s" is the spares that transactions hold and have not settled.
//
//	ARGV[1] requests q, ARGV[2] now (unix ms), ARGV[3] the reservations'
//	lapse (unix ms), ARGV[4] the reservation TTL (ms), ARGV[5] the
//	counters' key prefix, ARGV[6] rules r; then per rule: window (ns),
//	limit, soft (0|1), oldest bucket index in the window, the key TTL of
//	its counters (ms); then per request: its member name, its counters
//	n, the spares it asks for, the spares its transaction holds (it does
//	not wait for them), and per counter the number of its rule (1-based).
//	KEYS[1] the held set, then per request per counter its hash.
//
// A rule is what the counters of one rule share in a batch (every
// account's hourly counter, say): sent and parsed once per batch, not
// once per counter (see batcher.encode).
//
// Replies one reply per request: {1, spares, over...} (admitted with
// spares more; the soft counters it took past their limit, 0-based),
// {0, i, used} (refused by hard counter i), {"wait", i, used} when hard
// counter i has room but for other transactions' unsettled spares, or
// {"rebucket", i} when counter i was last written under another window.
// An admitted member is named with "#<spares>" before its counters when
// it took any.
var reserveScript = goredis.NewScript(commonLua + `
local held, lapse = KEYS[1], ARGV[3]
sweep(held, ARGV[2], ARGV[5], ` + strconv.Itoa(sweepLimit) + `)
local tnow = nowms()
local need = tnow + tonumber(ARGV[4])
local st, order = {}, {}
-- load reads counter c once per batch; nil when it is under another
-- window than win.
local function load(c, win, oldest, ttl)
  local s = st[c]
  if not s then
    local h = redis.call('HMGET', c, 'w', 'o', 't', 'x', 's')
    s = {w = h[1], fresh = not h[1], oldest = oldest, add = 0, x = h[4], ttl = ttl, sp = tonumber(h[5] or '0'), spadd = 0}
    if not s.w or s.w == win then s.t = trim(c, oldest, h[2], h[3]) end
    st[c] = s
    order[#order+1] = c
  elseif s.t and oldest > s.oldest then
    -- a later request of the batch in the next bucket: trim again
    s.t, s.oldest = trim(c, oldest, redis.call('HGET', c, 'o'), s.t), oldest
  end
  if s.w and s.w ~= win then return nil end
  s.w = win
  return s
end
local rules = {}
for j = 1, tonumber(ARGV[6]) do
  local b = 7 + (j-1)*5
  rules[tostring(j)] = {w = ARGV[b], limit = tonumber(ARGV[b+1]), soft = ARGV[b+2] == '1', oldest = tonumber(ARGV[b+3]), ttl = ARGV[b+4]}
end
local members = {}
local function reserve(k, a, n, member, spare, own)
  local ss, rs = {}, {}
  for i = 1, n do
    local rl = rules[ARGV[a+i-1]]
    local s = load(KEYS[k+i-1], rl.w, rl.oldest, rl.ttl)
    if not s then return {'rebucket', i-1} end
    local u = s.t + s.add
    if not rl.soft then
      local limit = rl.limit
      if u + 1 > limit then
        local others = s.sp + s.spadd - own
        if others > 0 and u - others + 1 <= limit then return {'wait', i-1, u} end
        return {0, i-1, u}
      end
      -- spares only where an eighth of the limit, and at least 4, stays
      -- free after them
      spare = math.min(spare, limit - math.max(math.floor(limit / 8), 4) - u - 1)
    else
      spare = 0
    end
    ss[i], rs[i] = s, rl
  end
  if spare < 0 then spare = 0 end
  local out = {1, spare}
  for i = 1, n do
    local s, rl = ss[i], rs[i]
    if rl.soft and s.t + s.add + 1 > rl.limit then
      out[#out+1] = i-1
    end
    s.add = s.add + 1 + spare
    s.spadd = s.spadd + spare
  end
  if spare > 0 then
    local p = string.find(member, '|', 1, true) or (#member + 1)
    member = string.sub(member, 1, p - 1) .. '#' .. spare .. string.sub(member, p)
  end
  members[#members+1] = lapse
  members[#members+1] = member
  return out
end
local replies = {}
local a, k = 7 + 5*tonumber(ARGV[6]), 2
for x = 1, tonumber(ARGV[1]) do
  local member, n, spare, own = ARGV[a], tonumber(ARGV[a+1]), tonumber(ARGV[a+2]), tonumber(ARGV[a+3])
  replies[x] = reserve(k, a + 4, n, member, spare, own)
  a = a + 4 + n
  k = k + n
end
for _, c in ipairs(order) do
  local s = st[c]
  if s.add > 0 then
    -- one HSET of what the batch read and changed, not an HINCRBY per
    -- field (the script is atomic): one call less per counter, 382k ->
    -- 370k instructions a message in Redis (callgrind.sh, 2026-12-04);
    -- folding the commit script's writes so measured 361k -> 371k, more
    local f = {'t', s.t + s.add}
    if s.spadd > 0 then f[3], f[4] = 's', s.sp + s.spadd end
    if s.fresh then f[#f+1], f[#f+2] = 'w', s.w end
    renew(c, s.x, need, tnow, s.ttl, f)
    redis.call('HSET', c, unpack(f))
  end
end
if #members > 0 then redis.call('ZADD', held, unpack(members)) end
return replies
`)

// commitScript counts units: for each request of a batch (one message's
// reservations), all of its units or none, the requests one after the
// other.
//
//	ARGV[1] requests q, ARGV[2] rules r; then per rule: window (ns),
//	bucket index of now, key TTL (ms), the TTL its counters need at
//	least (ms); then per request: its counters k, its reservations m, per
//	counter: the number of its rule (1-based), units u to count, unspent
//	spares to give back, spares to settle; then the m reservations'
//	members. KEYS[1] the held set, then per request per counter its hash.
//
// Replies one reply per request: {1}, {"unknown"} (a reservation is not
// held: committed, released or lapsed) or {"rebucket", i}.
var commitScript = goredis.NewScript(commonLua + `
local held = KEYS[1]
local tnow = nowms()
local rules = {}
for j = 1, tonumber(ARGV[2]) do
  local b = 3 + (j-1)*4
  rules[tostring(j)] = {w = ARGV[b], idx = ARGV[b+1], ttl = ARGV[b+2], need = tonumber(ARGV[b+3])}
end
local first = 3 + 4*tonumber(ARGV[2])
-- Whether the members are held, for the whole batch in one read.
local all, a = {}, first
for x = 1, tonumber(ARGV[1]) do
  local k, m = tonumber(ARGV[a]), tonumber(ARGV[a+1])
  for j = 1, m do all[#all+1] = ARGV[a+2+4*k+j-1] end
  a = a + 2 + 4*k + m
end
local isHeld = {}
if #all > 0 then
  local scores = redis.call('ZMSCORE', held, unpack(all))
  for j = 1, #all do isHeld[all[j]] = scores[j] ~= false and scores[j] ~= nil end
end
local st, order, done = {}, {}, {}
local function load(c)
  local s = st[c]
  if not s then
    local h = redis.call('HMGET', c, 'w', 'o', 'x')
    s = {w = h[1], fresh = not h[1], o = tonumber(h[2]), x = h[3], buckets = {}, border = {}, need = 0, back = 0, settle = 0}
    st[c] = s
    order[#order+1] = c
  end
  return s
end
local function commit(kk, b, k, m)
  local members = {}
  for j = 1, m do
    members[j] = ARGV[b+4*k+j-1]
    if not isHeld[members[j]] then return {'unknown'} end
  end
  local ss, rs = {}, {}
  for i = 1, k do
    local s, rl = load(KEYS[kk+i-1]), rules[ARGV[b+(i-1)*4]]
    if s.w and s.w ~= rl.w then return {'rebucket', i-1} end
    ss[i], rs[i] = s, rl
  end
  for j = 1, m do
    isHeld[members[j]] = false
    done[#done+1] = members[j]
  end
  for i = 1, k do
    local s, rl, at = ss[i], rs[i], b + (i-1)*4
    local idx = rl.idx
    if not s.buckets[idx] then
      s.buckets[idx] = 0
      s.border[#s.border+1] = idx
    end
    s.buckets[idx] = s.buckets[idx] + tonumber(ARGV[at+1])
    s.back = s.back + tonumber(ARGV[at+2])
    s.settle = s.settle + tonumber(ARGV[at+3])
    s.w, s.ttl = rl.w, rl.ttl
    s.need = math.max(s.need, rl.need)
  end
  return {1}
end
local replies = {}
local kk
a, kk = first, 2
for x = 1, tonumber(ARGV[1]) do
  local k, m = tonumber(ARGV[a]), tonumber(ARGV[a+1])
  replies[x] = commit(kk, a + 2, k, m)
  a = a + 2 + 4*k + m
  kk = kk + k
end
for _, c in ipairs(order) do
  local s = st[c]
  if #s.border > 0 then
    local low = s.o
    for _, idx in ipairs(s.border) do
      redis.call('HINCRBY', c, idx, s.buckets[idx])
      local n = tonumber(idx)
      if not low or n < low then low = n end
    end
    if low ~= s.o then redis.call('HSET', c, 'o', low) end
    if s.back > 0 then redis.call('HINCRBY', c, 't', -s.back) end
    if s.settle > 0 then redis.call('HINCRBY', c, 's', -s.settle) end
    if s.fresh then redis.call('HSET', c, 'w', s.w) end
    local f = {}
    renew(c, s.x, tnow + s.need, tnow, s.ttl, f)
    if #f > 0 then redis.call('HSET', c, unpack(f)) end
  end
end
if #done > 0 then redis.call('ZREM', held, unpack(done)) end
return replies
`)

// releaseScript gives a reservation (its unit and its spares) back, all
// or none: KEYS[1] the held set, then the hashes of its counters; ARGV[1]
// its member.
var releaseScript = goredis.NewScript(commonLua + `
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
local g = sparesOf(ARGV[1])
for i = 2, #KEYS do giveBack(KEYS[i], g) end
return 1
`)

// usageScript reads one counter: KEYS its hash and the held set; ARGV
// window (ns), oldest bucket index, now (unix ms), the counters' key
// prefix. Replies {committed, reserved} or {"rebucket"}; a counter never
// written replies {0, 0}.
var usageScript = goredis.NewScript(commonLua + `
sweep(KEYS[2], ARGV[3], ARGV[4], ` + strconv.Itoa(sweepLimit) + `)
local h = redis.call('HMGET', KEYS[1], 'w', 'o', 't')
if h[1] and h[1] ~= ARGV[1] then return {'rebucket'} end
local t = trim(KEYS[1], tonumber(ARGV[2]), h[2], h[3])
local committed = 0
local all = redis.call('HGETALL', KEYS[1])
for j = 1, #all, 2 do
  if tonumber(all[j]) then committed = committed + tonumber(all[j+1]) end
end
return {committed, t - committed}
`)

// expireScript trims one counter: KEYS its hash; ARGV oldest bucket index.
var expireScript = goredis.NewScript(commonLua + `
local h = redis.call('HMGET', KEYS[1], 'o', 't')
trim(KEYS[1], tonumber(ARGV[1]), h[1], h[2])
return 1
`)

// sweepScript gives back up to ARGV[3] lapsed reservations and replies how
// many are left to look at (0 when done): KEYS[1] the held set; ARGV[1]
// now (unix ms), ARGV[2] the counters' key prefix.
var sweepScript = goredis.NewScript(commonLua + `
sweep(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]))
return redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])
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
