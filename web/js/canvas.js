/**
 * The drawing pad: pointer input on a <canvas>, kept as strokes.
 *
 * Owns one active pointer at a time (mouse, pen or finger), a devicePixelRatio-aware backing
 * store, the strokes as lists of [x, y, t_ms] points in CSS pixels (streamed as ink, redrawn
 * after a resize, downloaded by "save strokes"), the PNG picture of the canvas for HTTP, and
 * the "snapshot" events that say when the server should hear of an edit: at most every
 * `throttleMs` while the pen moves, and once at every pen-up, undo and clear.
 * `detail.action` is "draw", "undo" or "clear"; `detail.final` is true except for the
 * throttled updates under a moving pen.
 * A "change" event follows every edit, so buttons can follow the number of strokes.
 */

const INK = "#000";
const PAPER = "#fff";
// The pen follows the pad's shorter side (its height, the pad being as wide as the window),
// never its width: a fourteenth of an 800-px-wide pad would be a 55-px brush. A 28th is
// thin for one digit drawn over two thirds of the height (the server widens a thin pen to
// MNIST's tenth of the digit's size), and thin enough for the smaller digits of a number,
// whose strokes would otherwise run together: with tests/drawing.py's pen paths, 314159
// across a phone's 388-px pad reads right with a 28th, and not with a 14th or a 20th.
const LINE_WIDTH_FRACTION = 1 / 28;

export class DrawingPad extends EventTarget {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{throttleMs?: number}} options
   */
  constructor(canvas, { throttleMs = 50 } = {}) {
    super();
    this.canvas = canvas;
    // An opaque context: what is not ink is white paper, also in the PNGs we send.
    this.context = canvas.getContext("2d", { alpha: false });
    this.throttleMs = throttleMs;
    /** @type {number[][][]} every stroke as [[x, y, t_ms], ...] in CSS pixels */
    this.strokes = [];
    this.width = 0;
    this.height = 0;
    this.pixelRatio = 1;
    this.activePointer = null;
    this.origin = null;
    this.lastSnapshotAt = -Infinity;
    this.snapshotTimer = null;
    this.exportCanvas = document.createElement("canvas");

    canvas.addEventListener("pointerdown", (event) => this.onPointerDown(event));
    canvas.addEventListener("pointermove", (event) => this.onPointerMove(event));
    canvas.addEventListener("pointerup", (event) => this.onPointerEnd(event));
    canvas.addEventListener("pointercancel", (event) => this.onPointerEnd(event));
    // Capture can be lost without a pointerup (an alert, the element leaving the DOM).
    canvas.addEventListener("lostpointercapture", (event) => this.onPointerEnd(event));
    // A long press would otherwise open the context menu on touch screens.
    canvas.addEventListener("contextmenu", (event) => event.preventDefault());

    this.resize();
    new ResizeObserver(() => this.resize()).observe(canvas);
    // Zooming changes devicePixelRatio without changing the CSS size; browsers fire "resize".
    window.addEventListener("resize", () => this.resize());
  }

  get lineWidth() {
    return Math.min(this.width, this.height) * LINE_WIDTH_FRACTION;
  }

  get isEmpty() {
    return this.strokes.length === 0;
  }

  /** Whether a pen is down on the pad, adding to its last stroke. */
  get isDrawing() {
    return this.activePointer !== null;
  }

  /** Match the backing store to the CSS size times devicePixelRatio, keeping the drawing. */
  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const width = Math.round(rect.width);
    const height = Math.round(rect.height);
    const pixelRatio = window.devicePixelRatio || 1;
    if (width === 0 || height === 0) return;
    if (width === this.width && height === this.height && pixelRatio === this.pixelRatio) return;
    if (this.width > 0 && (width !== this.width || height !== this.height)) {
      // The layout changed (a phone turned round): scale the strokes with the canvas.
      const scaleX = width / this.width;
      const scaleY = height / this.height;
      for (const stroke of this.strokes) {
        for (const point of stroke) {
          point[0] *= scaleX;
          point[1] *= scaleY;
        }
      }
    }
    this.width = width;
    this.height = height;
    this.pixelRatio = pixelRatio;
    this.canvas.width = Math.round(width * pixelRatio);
    this.canvas.height = Math.round(height * pixelRatio);
    this.context.setTransform(pixelRatio, 0, 0, pixelRatio, 0, 0);
    this.redraw();
  }

  /** Remove every stroke. */
  clear() {
    this.endStroke();
    this.strokes = [];
    this.origin = null;
    this.redraw();
    this.emitChange();
    this.emitSnapshot(true, "clear");
  }

  /** Remove the last stroke. */
  undo() {
    if (this.strokes.length === 0) return;
    this.endStroke();
    this.strokes.pop();
    if (this.strokes.length === 0) this.origin = null;
    this.redraw();
    this.emitChange();
    this.emitSnapshot(true, "undo");
  }

  /** The strokes as the scripted client replays them: sizes in CSS pixels, times in ms. */
  toJSON() {
    return {
      width: this.width,
      height: this.height,
      line_width: round(this.lineWidth, 2),
      strokes: this.strokes.map((stroke) =>
        stroke.map(([x, y, t]) => [round(x, 2), round(y, 2), round(t, 1)]),
      ),
    };
  }

  /**
   * The picture to post when the socket is down: the strokes drawn afresh at CSS-pixel size
   * as an opaque PNG, so a phone's 3x backing store does not triple the bytes and the server
   * sees what the streamed ink would draw.
   * @returns {Promise<Blob>}
   */
  toBlob() {
    const picture = this.exportCanvas;
    picture.width = this.width;
    picture.height = this.height;
    const context = picture.getContext("2d", { alpha: false });
    this.paint(context);
    return new Promise((resolve, reject) => {
      picture.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("toBlob failed"))), "image/png");
    });
  }

  onPointerDown(event) {
    // One pointer draws; a second finger or a palm resting on the screen is ignored.
    if (this.activePointer !== null) return;
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    this.activePointer = event.pointerId;
    try {
      this.canvas.setPointerCapture(event.pointerId);
    } catch {
      // A pointer that is already gone cannot be captured; the stroke still works.
    }
    if (this.origin === null) this.origin = event.timeStamp;
    const point = this.pointFrom(event);
    this.strokes.push([point]);
    this.drawDot(this.context, point);
    this.emitChange();
    this.scheduleSnapshot();
  }

  onPointerMove(event) {
    if (event.pointerId !== this.activePointer) return;
    event.preventDefault();
    const stroke = this.strokes[this.strokes.length - 1];
    // Browsers deliver one pointermove per frame; the coalesced events hold every sample
    // in between, which keeps fast curves round.
    const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const sample of samples.length > 0 ? samples : [event]) {
      const point = this.pointFrom(sample);
      const previous = stroke[stroke.length - 1];
      if (point[0] === previous[0] && point[1] === previous[1]) continue;
      stroke.push(point);
      this.drawSegment(this.context, previous, point);
    }
    this.scheduleSnapshot();
  }

  onPointerEnd(event) {
    if (event.pointerId !== this.activePointer) return;
    this.endStroke();
    this.emitSnapshot(true);
  }

  endStroke() {
    if (this.activePointer === null) return;
    const pointer = this.activePointer;
    this.activePointer = null;
    if (this.canvas.hasPointerCapture(pointer)) this.canvas.releasePointerCapture(pointer);
    clearTimeout(this.snapshotTimer);
    this.snapshotTimer = null;
  }

  /** [x, y, t_ms] in CSS pixels of the canvas, time since the first point after a clear. */
  pointFrom(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * this.width) / rect.width;
    const y = ((event.clientY - rect.top) * this.height) / rect.height;
    return [x, y, Math.max(0, event.timeStamp - this.origin)];
  }

  /** Emit a snapshot now if the last one is `throttleMs` old, else once it is. */
  scheduleSnapshot() {
    if (this.snapshotTimer !== null) return;
    const wait = this.lastSnapshotAt + this.throttleMs - performance.now();
    if (wait <= 0) {
      this.emitSnapshot(false);
      return;
    }
    this.snapshotTimer = setTimeout(() => {
      this.snapshotTimer = null;
      if (this.activePointer !== null) this.emitSnapshot(false);
    }, wait);
  }

  emitSnapshot(final, action = "draw") {
    clearTimeout(this.snapshotTimer);
    this.snapshotTimer = null;
    this.lastSnapshotAt = performance.now();
    this.dispatchEvent(
      new CustomEvent("snapshot", { detail: { final, action, empty: this.isEmpty } }),
    );
  }

  emitChange() {
    this.dispatchEvent(new CustomEvent("change", { detail: { strokes: this.strokes.length } }));
  }

  redraw() {
    this.paint(this.context);
  }

  /** Paper, then every stroke, on a context whose transform maps CSS pixels. */
  paint(context) {
    context.save();
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.fillStyle = PAPER;
    context.fillRect(0, 0, context.canvas.width, context.canvas.height);
    context.restore();
    for (const stroke of this.strokes) {
      if (stroke.length === 1) {
        this.drawDot(context, stroke[0]);
        continue;
      }
      this.applyPen(context);
      context.beginPath();
      context.moveTo(stroke[0][0], stroke[0][1]);
      for (const [x, y] of stroke.slice(1)) context.lineTo(x, y);
      context.stroke();
    }
  }

  applyPen(context) {
    context.strokeStyle = INK;
    context.fillStyle = INK;
    context.lineWidth = this.lineWidth;
    context.lineCap = "round";
    context.lineJoin = "round";
  }

  drawSegment(context, from, to) {
    this.applyPen(context);
    context.beginPath();
    context.moveTo(from[0], from[1]);
    context.lineTo(to[0], to[1]);
    context.stroke();
  }

  drawDot(context, point) {
    // A zero-length line draws nothing in some browsers even with round caps; a disc does.
    this.applyPen(context);
    context.beginPath();
    context.arc(point[0], point[1], this.lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
  }
}

function round(value, digits) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
