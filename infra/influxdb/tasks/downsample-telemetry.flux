// Hourly means of every telemetry channel into the long-retention bucket telemetry_1h.
option task = {name: "downsample-telemetry", every: 1h, offset: 5m}

from(bucket: "telemetry")
  |> range(start: -task.every)
  |> filter(fn: (r) => r._measurement == "electrolyser")
  |> filter(fn: (r) => r._field != "seq" and r._field != "boot")
  |> aggregateWindow(every: 1h, fn: mean, createEmpty: false)
  |> to(bucket: "telemetry_1h")
