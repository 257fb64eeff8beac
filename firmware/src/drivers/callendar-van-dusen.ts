/*
	Platinum RTD resistance <-> temperature, Callendar–Van Dusen equation with the IEC 60751
	coefficients (the ones the MAX31865 datasheet's Table 9 uses):
		T >= 0 °C:  R(T) = R0 (1 + A·T + B·T²)
		T <  0 °C:  R(T) = R0 (1 + A·T + B·T² + C·(T − 100)·T³)
	Above 0 °C the quadratic inverts exactly. Below 0 °C the quartic has no convenient closed
	form, so the quadratic root seeds Newton's method on the full equation; it converges to
	well under 1 µK within a few steps over −200…0 °C.
*/

export const IEC60751 = Object.freeze({ A: 3.9083e-3, B: -5.775e-7, C: -4.183e-12 });

/** The temperature span IEC 60751 defines the equation for. */
export const RTD_MIN_C = -200;
export const RTD_MAX_C = 850;

export function rtdResistance(temperatureC: number, r0: number): number {
  const { A, B, C } = IEC60751;
  const t = temperatureC;
  const cubicTerm = t < 0 ? C * (t - 100) * t * t * t : 0;
  return r0 * (1 + A * t + B * t * t + cubicTerm);
}

/** NaN when the resistance is not on the curve (non-positive, or beyond the parabola's vertex). */
export function rtdTemperature(resistance: number, r0: number): number {
  const { A, B, C } = IEC60751;
  if (!(resistance > 0) || !(r0 > 0)) return NaN;
  const ratio = resistance / r0;
  const discriminant = A * A - 4 * B * (1 - ratio);
  if (discriminant < 0) return NaN;
  let t = (-A + Math.sqrt(discriminant)) / (2 * B);
  if (t >= 0) return t;

  for (let i = 0; i < 20; i++) {
    const f = 1 + A * t + B * t * t + C * (t - 100) * t * t * t - ratio;
    const slope = A + 2 * B * t + C * (4 * t * t * t - 300 * t * t);
    const step = f / slope;
    t -= step;
    if (Math.abs(step) < 1e-9) break;
  }
  return t;
}
