/* Worked examples copied (as numbers) from the datasheets the drivers implement. */

// MAX31865 datasheet Table 9, "Temperature Example for PT100 with 400 Ω RREF":
// temperature (°C), RTD resistance (Ω), RTD data register (01h–02h, fault bit D0 = 0).
export const TABLE_9: ReadonlyArray<readonly [number, number, number]> = [
  [-200, 18.52, 0x0bda],
  [-175, 29.22, 0x12b4],
  [-150, 39.72, 0x196c],
  [-100, 60.26, 0x2690],
  [-50, 80.31, 0x3366],
  [-20, 92.16, 0x3afc],
  [-10, 96.09, 0x3d7e],
  [0, 100.0, 0x4000],
  [10, 103.9, 0x4280],
  [50, 119.4, 0x4c6a],
  [80, 130.9, 0x53c6],
  [100, 138.51, 0x58a4],
  [200, 175.86, 0x708c],
  [250, 194.1, 0x7c3a],
  [400, 247.09, 0x9e24],
  [550, 297.49, 0xbe64],
];

// INA228 datasheet 8.2 Typical Application (Table 8-4; the same example appears in the INA229
// datasheet SLYS023): 48 V bus, 10 A maximum, 16.2 mΩ shunt, ADCRANGE = 0.
export const INA228_EXAMPLE = Object.freeze({
  maxCurrentA: 10,
  shuntOhms: 0.0162,
  currentLsb: 19.073486e-6,
  shuntVoltageCode: 311040, // × 312.5 nV = 0.0972 V
  shuntVoltage: 0.0972,
  currentCode: 314572, // × 19.073486 µA = 6 A
  current: 6,
  busVoltageCode: 245760, // × 195.3125 µV = 48 V
  busVoltage: 48,
  dieTemperatureCode: 3200, // × 7.8125 m°C = 25 °C
  dieTemperature: 25,
});
