-- wrk: every request asks for an id nobody asked for before (a cold miss), from a random base so
-- that successive runs never meet each other's entries.
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local base = math.random(0, 0x0fffffff)
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", string.format("/v1/enrollments/%08x-0000-4000-8000-%012x", base, counter))
end
