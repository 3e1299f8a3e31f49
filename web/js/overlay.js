/**
 * The pieces' boxes, outlined faintly over the drawing pad.
 *
 * Owns an SVG laid over the pad's canvas (`pointer-events: none`, hidden from assistive
 * technology): one rectangle per piece of the number read (`number.digits[].box`, in the
 * canvas pixels the answered ink was drawn on), a stronger one for the piece whose bars are
 * shown, and `?` pieces in the warning colour. It is never drawn on the canvas, so it is
 * never part of the ink sent, the PNG posted or the strokes saved.
 *
 * The SVG's viewBox is the pad's size when the boxes came. If the pad changes size before
 * the next answer, the SVG stretches with it (`preserveAspectRatio="none"`), as the server
 * scales the ink: x and y each by their own factor.
 */

const SVG_NAMESPACE = "http://www.w3.org/2000/svg";

export class PieceOverlay {
  /** @param {SVGSVGElement} svg */
  constructor(svg) {
    this.svg = svg;
  }

  /**
   * Outline these pieces on a pad of this size.
   * @param {{box: number[], digit: number | null}[]} pieces
   * @param {number | null} selected the index of the piece to stress
   * @param {{width: number, height: number}} size the pad's size in CSS pixels
   */
  show(pieces, selected, { width, height }) {
    const drawable = pieces.filter((piece) => isBox(piece.box));
    if (drawable.length === 0 || width === 0 || height === 0) {
      this.clear();
      return;
    }
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const rectangles = Array.from(this.svg.children);
    for (const extra of rectangles.slice(pieces.length)) extra.remove();
    pieces.forEach((piece, index) => {
      const rectangle =
        rectangles[index] ?? this.svg.appendChild(document.createElementNS(SVG_NAMESPACE, "rect"));
      const [x0, y0, x1, y1] = isBox(piece.box) ? piece.box : [0, 0, 0, 0];
      rectangle.setAttribute("x", String(x0));
      rectangle.setAttribute("y", String(y0));
      rectangle.setAttribute("width", String(Math.max(0, x1 - x0)));
      rectangle.setAttribute("height", String(Math.max(0, y1 - y0)));
      rectangle.dataset.index = String(index);
      rectangle.dataset.character = piece.digit === null ? "?" : String(piece.digit);
      rectangle.classList.toggle("selected", index === selected);
      rectangle.classList.toggle("unknown", piece.digit === null);
    });
    this.svg.dataset.shown = "true";
  }

  clear() {
    this.svg.replaceChildren();
    this.svg.dataset.shown = "false";
  }
}

function isBox(box) {
  return Array.isArray(box) && box.length === 4 && box.every((value) => Number.isFinite(value));
}
