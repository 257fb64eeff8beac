/** Finding attached ESP32 boards by the USB-UART bridges they use. */
import { SerialPort } from "serialport";

/** USB VID:PID of the bridges on ESP32 dev boards, and Espressif's own USB-Serial/JTAG. */
export const ESP_USB_IDS: readonly { vid: number; pid: number; name: string }[] = [
  { vid: 0x10c4, pid: 0xea60, name: "Silicon Labs CP210x" },
  { vid: 0x1a86, pid: 0x7523, name: "WCH CH340" },
  { vid: 0x1a86, pid: 0x55d4, name: "WCH CH9102" },
  { vid: 0x0403, pid: 0x6001, name: "FTDI FT232R" },
  { vid: 0x0403, pid: 0x6010, name: "FTDI FT2232" },
  { vid: 0x0403, pid: 0x6014, name: "FTDI FT232H" },
  { vid: 0x0403, pid: 0x6015, name: "FTDI FT231X" },
  { vid: 0x303a, pid: 0x1001, name: "Espressif USB-Serial/JTAG" },
];

export interface EspPort {
  path: string;
  vid: number;
  pid: number;
  bridge: string;
  serialNumber?: string;
}

export function matchEspPorts(
  ports: readonly { path: string; vendorId?: string; productId?: string; serialNumber?: string }[],
): EspPort[] {
  const out: EspPort[] = [];
  for (const p of ports) {
    if (!p.vendorId || !p.productId) continue;
    const vid = parseInt(p.vendorId, 16);
    const pid = parseInt(p.productId, 16);
    const known = ESP_USB_IDS.find((k) => k.vid === vid && k.pid === pid);
    if (known)
      out.push({
        path: p.path,
        vid,
        pid,
        bridge: known.name,
        ...(p.serialNumber ? { serialNumber: p.serialNumber } : {}),
      });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

export async function listEspPorts(): Promise<EspPort[]> {
  return matchEspPorts(await SerialPort.list());
}
