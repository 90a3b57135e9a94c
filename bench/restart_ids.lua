-- wrk: ids at random among the BENCH_ENTRIES ids bench/fill_cache.c and bench/run stored.
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local n = tonumber(os.getenv("BENCH_ENTRIES") or "1000000")
request = function()
  return wrk.format("GET", string.format("/v1/enrollments/b0000000-0000-4000-8000-%012d", math.random(0, n - 1)))
end
