-- wrk script of the load benchmark (tests/bench/load.py): POSTs one
-- AdmissionReview, the file named by WASMHOOK_BENCH_BODY, on keep-alive
-- connections, and prints one machine-readable summary line at the end.

local function read_file(path)
  local file = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local body = file:read("*a")
  file:close()
  return body
end

wrk.method = "POST"
wrk.body = read_file(os.getenv("WASMHOOK_BENCH_BODY"))
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK_SUMMARY {\"requests\":%d,\"duration_us\":%d,\"errors\":{\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}," ..
      "\"latency_us\":{\"p50\":%d,\"p90\":%d,\"p99\":%d,\"p999\":%d,\"max\":%d}}\n",
    summary.requests, summary.duration,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
