-- wrk: GET enrollment ids drawn from a Zipf distribution (exponent BENCH_ZIPF_EXPONENT, 1) over
-- BENCH_ZIPF_IDS ids (100,000): id of rank r (0 the hottest) is %08x(r)-0000-4000-8000-000000000000.
-- Each answer is classified by its Cache-Status (flipcached's RFC 9211 value, or nginx's
-- $upstream_cache_status) and its rank read back from the body: a fresh hit, or a client-visible
-- wait (a miss, which waited for the upstream, or a stale answer). done() prints one line:
--   zipf requests=N hot_requests=N hot_waits=N hot_stale=N hot_misses=N hot_first=N waits=N stale=N misses=N errors=N
-- "hot" is the hottest 1% of the ids (rank < N/100). A hot miss on an id never asked before (in
-- this run, or in the run that wrote BENCH_ZIPF_SEEN, a file of the hot ranks asked, which
-- done() rewrites) is its first request ever: counted as hot_first, not as a wait.
local n = tonumber(os.getenv("BENCH_ZIPF_IDS") or "100000")
local exponent = tonumber(os.getenv("BENCH_ZIPF_EXPONENT") or "1")
local seen_file = os.getenv("BENCH_ZIPF_SEEN")
-- A fixed request rate, so that every server sees the same load (up/1000 depends on it: the
-- faster the requests, the more hits each fetched entry gets): BENCH_ZIPF_RATE a second over
-- BENCH_ZIPF_CONNECTIONS connections, each waiting its share before its next request.
local rate = tonumber(os.getenv("BENCH_ZIPF_RATE") or "4000")
local connections = tonumber(os.getenv("BENCH_ZIPF_CONNECTIONS") or "32")
local pause_ms = 1000 * connections / rate
local hot_limit = math.floor(n / 100)
local cdf = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local sum = 0
  for k = 1, n do
    sum = sum + k ^ -exponent
    cdf[k] = sum
  end
  for k = 1, n do cdf[k] = cdf[k] / sum end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  counts = {requests = 0, hot_requests = 0, hot_stale = 0, hot_misses = 0, hot_first = 0, stale = 0,
            misses = 0, errors = 0}
  seen = {}
  local file = seen_file and io.open(seen_file, "r")
  if file then
    for line in file:lines() do seen[tonumber(line)] = true end
    file:close()
  end
end

local function rank()
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo - 1
end

function delay()
  return pause_ms
end

function request()
  return wrk.format("GET", string.format("/v1/enrollments/%08x-0000-4000-8000-000000000000", rank()))
end

function response(status, headers, body)
  counts.requests = counts.requests + 1
  local id = body and body:match('"id":"(%x%x%x%x%x%x%x%x)%-0000%-4000%-8000%-000000000000"')
  if status ~= 200 or not id then
    counts.errors = counts.errors + 1
    return
  end
  local r = tonumber(id, 16)
  local cs = headers["Cache-Status"] or headers["cache-status"] or ""
  local fresh = cs == "HIT" or cs:find("; hit; ttl=%d") ~= nil
  local stale = cs == "STALE" or cs == "UPDATING" or cs:find("; hit; ttl=%-") ~= nil
  local hot = r < hot_limit
  local first = hot and not seen[r]
  if hot then
    counts.hot_requests = counts.hot_requests + 1
    seen[r] = true
  end
  if fresh then return end
  if first and not stale then
    counts.hot_first = counts.hot_first + 1
    return
  end
  if stale then
    counts.stale = counts.stale + 1
    if hot then counts.hot_stale = counts.hot_stale + 1 end
  else
    counts.misses = counts.misses + 1
    if hot then counts.hot_misses = counts.hot_misses + 1 end
  end
end

function done(summary, latency, requests)
  local total = {requests = 0, hot_requests = 0, hot_stale = 0, hot_misses = 0, hot_first = 0,
                 stale = 0, misses = 0, errors = 0}
  local all_seen = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for k, v in pairs(c) do total[k] = total[k] + v end
    for r in pairs(thread:get("seen")) do all_seen[r] = true end
  end
  if seen_file then
    local file = io.open(seen_file, "w")
    for r in pairs(all_seen) do file:write(r, "\n") end
    file:close()
  end
  io.write(string.format(
    "zipf requests=%d hot_requests=%d hot_waits=%d hot_stale=%d hot_misses=%d hot_first=%d waits=%d stale=%d misses=%d errors=%d\n",
    total.requests, total.hot_requests, total.hot_stale + total.hot_misses, total.hot_stale,
    total.hot_misses, total.hot_first, total.stale + total.misses, total.stale, total.misses,
    total.errors))
end
