"""A small labelled set of images built here, for the image-kind classifier and the token benchmark.

Four kinds, each drawn the way the real thing looks to a camera or a screen grabber:
- document: invoice- and letter-like pages typeset with PyMuPDF and rendered to pixels;
- chart: bar, line, pie and scatter charts with matplotlib when it is installed, and bar/line
  charts drawn with Pillow either way (so the set never depends on matplotlib);
- screenshot: flat-colour application windows (title bar, sidebar, buttons, text);
- photo: natural-looking scenes synthesised with numpy (sky gradients, fractal texture, lit
  blobs, sensor noise), optionally with a small sign of text for the crop tests.

Everything is deterministic for a given seed; nothing is downloaded.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")

WORDS = [
    "account",
    "balance",
    "invoice",
    "order",
    "delivery",
    "service",
    "total",
    "amount",
    "payment",
    "customer",
    "reference",
    "quantity",
    "description",
    "price",
    "tax",
    "shipping",
    "address",
    "contact",
    "support",
    "update",
    "settings",
    "profile",
    "report",
    "summary",
    "project",
    "status",
    "review",
    "meeting",
    "schedule",
]


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # document | chart | screenshot | photo
    image: Image.Image


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_DIR / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def _phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize()


# ---------------------------------------------------------------- documents


def document_image(seed: int, dpi: int = 110) -> Image.Image:
    """An invoice- or letter-like A4/letter page typeset with PyMuPDF, rendered at `dpi`."""
    rng = random.Random(seed)
    doc = pymupdf.open()
    width, height = (595, 842) if seed % 2 == 0 else (612, 792)
    page = doc.new_page(width=width, height=height)
    fontname = ("helv", "tiro", "cour")[seed % 3]
    y = 60.0
    page.insert_text((50, y), _phrase(rng, 2).upper(), fontsize=18, fontname=fontname)
    y += 30
    for _ in range(3):
        page.insert_text((50, y), _phrase(rng, 4), fontsize=10, fontname=fontname)
        y += 14
    y += 20
    if seed % 2 == 0:  # an invoice: a table of line items with a rule under the header
        page.draw_line((50, y + 4), (width - 50, y + 4), color=(0, 0, 0), width=0.8)
        for row in range(rng.randint(8, 14)):
            qty, price = rng.randint(1, 9), rng.randint(100, 9999) / 100
            page.insert_text((50, y), _phrase(rng, 3), fontsize=10, fontname=fontname)
            page.insert_text((360, y), str(qty), fontsize=10, fontname=fontname)
            page.insert_text((420, y), f"{price:.2f}", fontsize=10, fontname=fontname)
            page.insert_text((490, y), f"{qty * price:.2f}", fontsize=10, fontname=fontname)
            y += 18 if row else 22
        page.insert_text((400, y + 20), "Total due", fontsize=11, fontname=fontname)
    else:  # a letter: paragraphs of running text
        for _ in range(rng.randint(4, 6)):
            for _ in range(rng.randint(3, 6)):
                page.insert_text((50, y), _phrase(rng, 9), fontsize=10.5, fontname=fontname)
                y += 14
            y += 12
    pix = page.get_pixmap(dpi=dpi, alpha=False)
    image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples)
    doc.close()
    return image


# ---------------------------------------------------------------- charts


def _matplotlib_chart(seed: int) -> Image.Image | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    style = seed % 4
    labels = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"][: 4 + seed % 3]
    if style == 0:
        ax.bar(labels, rng.integers(10, 100, len(labels)), color="tab:blue")
        ax.set_ylabel("Revenue (kEUR)")
    elif style == 1:
        x = np.arange(12)
        for name in ("north", "south"):
            ax.plot(x, np.cumsum(rng.normal(2, 3, 12)), marker="o", label=name)
        ax.legend()
        ax.set_xlabel("Month")
    elif style == 2:
        ax.pie(rng.integers(5, 40, 4), labels=["rent", "staff", "energy", "other"])
    else:
        ax.scatter(rng.normal(0, 1, 60), rng.normal(0, 1, 60), c="tab:orange")
        ax.set_xlabel("Latency (ms)")
        ax.set_ylabel("Error rate")
    ax.set_title(f"Figure {seed}: quarterly results")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def pillow_chart(seed: int) -> Image.Image:
    """A bar or line chart drawn with Pillow: axes, ticks, labels, coloured marks."""
    rng = random.Random(seed)
    width, height = 720, 480
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 80, 60, width - 30, height - 60
    draw.text((left, 20), f"Sales by region {2020 + seed % 5}", fill="black", font=font(20))
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black", width=2)
    for i in range(6):
        y = bottom - i * (bottom - top) // 5
        draw.line([(left - 6, y), (left, y)], fill="black")
        draw.text((left - 45, y - 8), str(i * 20), fill="black", font=font(13))
        draw.line([(left + 1, y), (right, y)], fill=(225, 225, 225))
    n = rng.randint(4, 7)
    step = (right - left) // n
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    values = [rng.uniform(0.1, 1.0) for _ in range(n)]
    if seed % 2 == 0:
        for i, value in enumerate(values):
            x0 = left + i * step + step // 5
            y0 = bottom - int(value * (bottom - top))
            draw.rectangle([x0, y0, x0 + step * 3 // 5, bottom - 1], fill=colours[i % 2])
    else:
        points = [
            (left + i * step + step // 2, bottom - int(v * (bottom - top)))
            for i, v in enumerate(values)
        ]
        draw.line(points, fill=colours[seed % 4], width=3)
        for x, y in points:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colours[seed % 4])
    for i in range(n):
        draw.text(
            (left + i * step + step // 3, bottom + 10), f"R{i + 1}", fill="black", font=font(13)
        )
    return image


def chart_image(seed: int, engine: str = "auto") -> Image.Image:
    """A chart: matplotlib when installed (engine "auto"), else (or engine "pillow") Pillow."""
    if engine == "auto":
        made = _matplotlib_chart(seed)
        if made is not None:
            return made
    return pillow_chart(seed)


# ---------------------------------------------------------------- screenshots


def screenshot_image(seed: int) -> Image.Image:
    """An application window: title bar, coloured sidebar, toolbar buttons, a list of rows."""
    rng = random.Random(seed)
    width, height = (1280, 800) if seed % 2 == 0 else (1024, 640)
    palettes = [
        ((36, 41, 47), (246, 248, 250), (9, 105, 218)),
        ((30, 30, 30), (37, 37, 38), (0, 122, 204)),
        ((59, 89, 152), (233, 235, 238), (66, 183, 42)),
        ((52, 58, 64), (255, 255, 255), (220, 53, 69)),
    ]
    bar, body, accent = palettes[seed % len(palettes)]
    dark = sum(body) < 300
    ink = (230, 230, 230) if dark else (33, 37, 41)
    image = Image.new("RGB", (width, height), body)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, width, 44], fill=bar)
    draw.text((16, 12), f"{_phrase(rng, 2)} — Dashboard", fill=(255, 255, 255), font=font(17))
    side = 220
    side_fill = tuple(max(0, c - 18) for c in body) if not dark else (50, 50, 52)
    draw.rectangle([0, 44, side, height], fill=side_fill)
    for i in range(8):
        y = 70 + i * 40
        if i == seed % 8:
            draw.rectangle([0, y - 8, side, y + 26], fill=accent)
        draw.text((24, y), _phrase(rng, 1), fill=ink, font=font(15))
    for i in range(3):
        x = side + 24 + i * 130
        draw.rounded_rectangle([x, 64, x + 115, 98], radius=6, fill=accent)
        draw.text(
            (x + 14, 72),
            rng.choice(["Save", "New", "Export", "Share"]),
            fill="white",
            font=font(15),
        )
    for row in range(rng.randint(7, 11)):
        y = 124 + row * 44
        if row % 2 == 0:
            stripe = tuple(min(255, c + 8) for c in body) if dark else (240, 242, 245)
            draw.rectangle([side + 16, y - 8, width - 16, y + 30], fill=stripe)
        draw.text((side + 28, y), _phrase(rng, 4), fill=ink, font=font(15))
        draw.text((width - 180, y), f"{rng.randint(1, 28)} Nov 2026", fill=ink, font=font(15))
    return image


# ---------------------------------------------------------------- photos


def _fractal_noise(
    rng: np.random.Generator, height: int, width: int, octaves: int = 6
) -> np.ndarray:
    """Sum of upscaled random grids: the self-similar texture of foliage, rock and cloud."""
    total = np.zeros((height, width), dtype=np.float64)
    amplitude = 1.0
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.random((cells, cells))
        layer = Image.fromarray((grid * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        total += amplitude * np.asarray(layer, dtype=np.float64) / 255.0
        amplitude *= 0.55
    total -= total.min()
    return total / max(total.max(), 1e-9)


def photo_image(seed: int, sign_text: str | None = None) -> Image.Image:
    """A synthetic outdoor photo: sky gradient over textured ground, lit blobs, sensor noise.

    With `sign_text`, a small white sign with dark lettering stands somewhere in the scene.
    """
    rng = np.random.default_rng(seed)
    width, height = (1200, 900) if seed % 2 == 0 else (1000, 750)
    yy = np.linspace(0.0, 1.0, height)[:, None]
    horizon = int(height * rng.uniform(0.35, 0.6))
    sky_top = np.array([rng.uniform(40, 90), rng.uniform(90, 140), rng.uniform(170, 230)])
    sky_low = np.array([rng.uniform(170, 220), rng.uniform(190, 225), rng.uniform(210, 245)])
    sky = sky_top + (sky_low - sky_top) * (yy / max(horizon / height, 1e-3))
    img = np.repeat(sky[:, None, :], width, axis=1)
    clouds = _fractal_noise(rng, height, width)[..., None]
    img = img * (1 - 0.35 * clouds) + 255 * 0.35 * clouds
    ground_colour = np.array([rng.uniform(40, 110), rng.uniform(80, 140), rng.uniform(20, 70)])
    texture = _fractal_noise(rng, height, width, octaves=7)[..., None]
    ground = ground_colour * (0.45 + 0.9 * texture)
    mask = (np.arange(height)[:, None] >= horizon + 12 * np.sin(np.arange(width) / 37.0))[..., None]
    img = np.where(mask, ground, img)
    for _ in range(int(rng.integers(3, 7))):  # trees, rocks: shaded discs
        cx, cy = rng.integers(0, width), rng.integers(horizon - 60, height)
        radius = rng.integers(30, 120)
        xx = np.arange(width)[None, :]
        dist = np.sqrt((xx - cx) ** 2 + (np.arange(height)[:, None] - cy) ** 2) / radius
        shade = np.clip(1 - dist, 0, 1)[..., None]
        colour = np.array([rng.uniform(20, 90), rng.uniform(50, 120), rng.uniform(10, 60)])
        img = img * (1 - (shade > 0)) + (shade > 0) * colour * (0.5 + shade)
    img = img + rng.normal(0, 6, img.shape)
    photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(0.8)
    )
    if sign_text:
        draw = ImageDraw.Draw(photo)
        face = font(26, bold=True)
        box = draw.textbbox((0, 0), sign_text, font=face)
        w, h = int(box[2] - box[0]) + 30, int(box[3] - box[1]) + 24
        x = int(rng.integers(40, width - w - 40))
        y = int(rng.integers(horizon, height - h - 40))
        draw.rectangle([x, y, x + w, y + h], fill=(245, 245, 240), outline=(60, 60, 60), width=3)
        draw.text((x + 15, y + 10), sign_text, fill=(25, 25, 25), font=face)
    return photo


# ---------------------------------------------------------------- the labelled set

BUILDERS: dict[str, Callable[[int], Image.Image]] = {
    "document": document_image,
    "chart": chart_image,
    "screenshot": screenshot_image,
    "photo": photo_image,
}


def labelled_set(per_kind: int = 6) -> list[Sample]:
    """`per_kind` images of each kind; charts alternate matplotlib and Pillow drawings."""
    samples: list[Sample] = []
    for kind, build in BUILDERS.items():
        for seed in range(per_kind):
            if kind == "chart" and seed % 2 == 1:
                image = chart_image(seed, engine="pillow")
            else:
                image = build(seed)
            samples.append(Sample(f"{kind}-{seed}", kind, image))
    return samples


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
