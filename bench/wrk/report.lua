-- Appended to every script the bench gives wrk: one line of JSON it reads back.
-- Latencies are in microseconds; "status" counts answers other than 2xx and 3xx.
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, '
      .. '"p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f, "connect": %d, '
      .. '"read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout
  ))
end
