/**
 * The ink the server holds for this page's connection, and the messages that keep it equal
 * to the drawing pad's strokes (PROTOCOL.md, "v2 additions: Ink").
 *
 * Owns what has reached the server on the current connection (how many strokes, how many
 * points of the last one) and builds, without sequence numbers (the socket adds them):
 * - `{"type": "ink", "width", "height", "line_width", "stroke", "points"}`: only the points
 *   drawn since the last message, in CSS pixels of the canvas rounded to 0.1 px;
 * - `{"type": "strokes", "width", "height", "line_width", "strokes"}`: the whole drawing,
 *   after a (re)connect or whenever the server's ink is not known to match the pad's;
 * - `{"type": "undo"}` and `{"type": "clear"}`;
 * and the whole drawing without a type, as a correction sends it.
 *
 * Every earlier stroke reaches the server whole: a stroke's last points go out at its pen-up,
 * before the next stroke can start. A new stroke whose predecessor is not whole on the
 * server, or anything else an append cannot express, goes out as the whole drawing.
 */

// A tenth of a CSS pixel is finer than any pen and keeps each point to a dozen bytes.
const DECIMALS = 1;

export class InkSync {
  /** @param {import("./canvas.js").DrawingPad} pad */
  constructor(pad) {
    this.pad = pad;
    this.reset();
  }

  /** A new connection: the server holds no ink yet. */
  reset() {
    this.synced = true;
    this.sentStrokes = 0;
    this.sentPoints = 0;
  }

  /** The server refused a message, so its ink is unknown: the next update sends it all. */
  invalidate() {
    this.synced = false;
  }

  /** The message that brings the server's ink up to the pad's: new points, or everything. */
  update() {
    const strokes = this.pad.strokes;
    const count = strokes.length;
    if (!this.synced || count === 0) return this.everything();
    if (count === this.sentStrokes) {
      const stroke = strokes[count - 1];
      if (this.sentPoints > stroke.length) return this.everything();
      return this.append(count - 1, this.sentPoints);
    }
    const previousWhole =
      this.sentStrokes === 0 || strokes[this.sentStrokes - 1].length === this.sentPoints;
    if (count === this.sentStrokes + 1 && previousWhole) return this.append(count - 1, 0);
    return this.everything();
  }

  /** After the pad dropped its last stroke: `undo` if the server had that stroke. */
  undo() {
    const strokes = this.pad.strokes;
    const count = strokes.length;
    if (!this.synced || this.sentStrokes !== count + 1) return this.everything();
    // The strokes before the undone one were whole on the server when it began.
    this.sentStrokes = count;
    this.sentPoints = count > 0 ? strokes[count - 1].length : 0;
    return { type: "undo" };
  }

  /** After the pad dropped every stroke. */
  clear() {
    this.reset();
    return { type: "clear" };
  }

  /** The whole drawing, replacing whatever ink the server holds. */
  everything() {
    const strokes = this.pad.strokes;
    this.synced = true;
    this.sentStrokes = strokes.length;
    this.sentPoints = strokes.length > 0 ? strokes[strokes.length - 1].length : 0;
    return { type: "strokes", ...this.drawing() };
  }

  /**
   * The pad's drawing as the wire carries it, `{width, height, line_width, strokes}`, without
   * touching what the server is known to hold: what a correction sends.
   */
  drawing() {
    return { ...this.canvas(), strokes: this.pad.strokes.map((stroke) => stroke.map(wirePoint)) };
  }

  /** Stroke `index` from point `from` on; a stroke the server lacks starts with point 0. */
  append(index, from) {
    const stroke = this.pad.strokes[index];
    this.sentStrokes = index + 1;
    this.sentPoints = stroke.length;
    return {
      type: "ink",
      ...this.canvas(),
      stroke: index,
      points: stroke.slice(from).map(wirePoint),
    };
  }

  /**
   * The canvas as it is now. After a resize the pad has scaled its points; the server scales
   * the ink it has from the size it last heard to this one.
   */
  canvas() {
    return {
      width: this.pad.width,
      height: this.pad.height,
      line_width: round(this.pad.lineWidth, 2),
    };
  }
}

/** [x, y] rounded for the wire; the pad's time stamps stay on the page. */
function wirePoint([x, y]) {
  return [round(x, DECIMALS), round(y, DECIMALS)];
}

function round(value, digits) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
