/*
	What every driver's sample() reports per measured quantity: a value, or no value and the
	reason the sensor could not be trusted. A faulted channel never carries a number, so a
	made-up value cannot reach the payload.
*/

export type FaultReason =
  | "bus_error" // the bus transaction failed (I2C NACK, SPI/UART IO error)
  | "no_device" // the chip did not identify itself or did not configure
  | "open_circuit" // RTD or current loop open
  | "short_circuit" // RTD shorted
  | "under_range" // below what the sensor can measure / NAMUR NE 43 failure low
  | "over_range" // above what the sensor can measure / NAMUR NE 43 failure high
  | "sensor_fault" // the chip's own fault detection tripped
  | "conversion_timeout" // the chip never finished a conversion
  | "timeout" // no answer from a field device
  | "crc_error" // a frame with a bad checksum
  | "exception" // a Modbus exception response
  | "bad_response" // a well-formed but unexpected answer
  | "invalid_value"; // NaN/Infinity or otherwise unusable number

export interface SensorFault {
  reason: FaultReason;
  detail: string;
}

export type Measured = { value: number; fault: null } | { value: null; fault: SensorFault };

export function measured(value: number): Measured {
  if (!Number.isFinite(value)) return faulted("invalid_value", `not a finite number: ${value}`);
  return { value, fault: null };
}

export function faulted(reason: FaultReason, detail: string): Measured {
  return { value: null, fault: { reason, detail } };
}

export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
