// Reading .npy buffers and writing WAV files in the browser: no numerics, just the two formats.
"use strict";

/** Parse a NumPy .npy file (little-endian float32/float64, C order, 1-D or 2-D).
 *  Returns {rows, cols, data: Float32Array (row-major)}. */
function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") {
    throw new Error("not a .npy file");
  }
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLen = major >= 2 ? view.getUint32(8, true) : view.getUint16(8, true);
  const start = major >= 2 ? 12 : 10;
  const header = new TextDecoder("latin1").decode(bytes.slice(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").map(s => s.trim()).filter(Boolean).map(Number);
  const offset = start + headerLen;
  let data;
  if (descr === "<f4") {
    data = new Float32Array(buffer.slice(offset));
  } else if (descr === "<f8") {
    data = Float32Array.from(new Float64Array(buffer.slice(offset)));
  } else {
    throw new Error("unsupported .npy dtype " + descr);
  }
  const rows = shape[0] || 1;
  const cols = shape.length > 1 ? shape[1] : 1;
  if (fortran && cols > 1) {
    const c = new Float32Array(rows * cols);
    for (let j = 0; j < cols; j++) for (let i = 0; i < rows; i++) c[i * cols + j] = data[j * rows + i];
    data = c;
  }
  return {rows, cols, data};
}

/** Encode channels (arrays of Float32Array, equal length) as a 32-bit float WAV Blob. */
function encodeWav(channels, sampleRate) {
  const n = channels[0].length;
  const c = channels.length;
  const dataBytes = n * c * 4;
  const buf = new ArrayBuffer(44 + dataBytes);
  const v = new DataView(buf);
  const text = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); v.setUint32(4, 36 + dataBytes, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 3, true); v.setUint16(22, c, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * c * 4, true); v.setUint16(32, c * 4, true);
  v.setUint16(34, 32, true); text(36, "data"); v.setUint32(40, dataBytes, true);
  const out = new Float32Array(buf, 44, n * c);
  for (let i = 0; i < n; i++) for (let ch = 0; ch < c; ch++) out[i * c + ch] = channels[ch][i];
  return new Blob([buf], {type: "audio/wav"});
}
