"""Draw pen strokes into a picture: `#000` ink on a `#fff` canvas, round caps and joins."""

from __future__ import annotations

from PIL import Image, ImageDraw

from server.protocol import StrokesSnapshot


def draw_strokes(snapshot: StrokesSnapshot) -> Image.Image:
    """Render a strokes message as a greyscale picture of the canvas size it names.

    Pillow's wide lines have square ends and mitred corners, so a disc of the pen's width is
    drawn at every point: that rounds the caps and joins the way a canvas with
    `lineCap = lineJoin = "round"` does, and a single-point stroke becomes a dot.
    """
    image = Image.new("L", (snapshot.width, snapshot.height), 255)
    draw = ImageDraw.Draw(image)
    width = max(1, round(snapshot.line_width))
    radius = snapshot.line_width / 2
    for stroke in snapshot.strokes:
        if len(stroke) > 1:
            draw.line(stroke, fill=0, width=width)
        for x, y in stroke:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=0)
    return image
