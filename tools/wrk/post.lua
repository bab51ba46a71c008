-- wrk driver for a form POST: BODY (the form body) and BASIC (base64 of client_id:secret)
-- or BEARER (a token) from the environment. Prints one RESULT line at the end.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
if os.getenv("BASIC") then
  wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
elseif os.getenv("BEARER") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BEARER")
end
function done(s, lat, req)
  io.write(string.format("RESULT rps=%.0f p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms n=%d non2xx=%d sockerr=%d\n",
    s.requests / (s.duration / 1e6), lat:percentile(50) / 1000, lat:percentile(90) / 1000,
    lat:percentile(99) / 1000, lat.max / 1000, s.requests, s.errors.status,
    s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout))
end
