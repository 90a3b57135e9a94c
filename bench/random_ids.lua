-- wrk: GET one of 10,000 enrollment ids at random (ids 00000000 .. 0000270f).
math.randomseed(os.time())
request = function()
  local n = math.random(0, 9999)
  return wrk.format("GET", string.format("/v1/enrollments/%08x-0000-4000-8000-000000000000", n))
end
