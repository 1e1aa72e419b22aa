"""serving.images: every image mode decodes to the right shape, values and orientation, and
bad files give one clear line naming the file."""
import io

import numpy as np
import pytest
from PIL import Image

from serving.images import ImageError, load_image


def save(img, path, **kw):
    img.save(path, **kw)
    return path


def halves(mode_color_left, mode_color_right, size=(20, 10), mode="RGB"):
    """A W x H image, left half one color, right half another."""
    img = Image.new(mode, size, mode_color_right)
    img.paste(Image.new(mode, (size[0] // 2, size[1]), mode_color_left), (0, 0))
    return img


def test_rgb_png_to_rgb_and_gray(tmp_path):
    p = save(halves((255, 0, 0), (0, 0, 255)), tmp_path / "a.png")
    rgb = load_image(p, size=None)
    assert rgb.shape == (10, 20, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[5, 2]) == (255, 0, 0) and tuple(rgb[5, 17]) == (0, 0, 255)
    gray = load_image(p, size=(8, 8), channels=1)
    assert gray.shape == (8, 8, 1)


def test_exif_rotation_is_applied(tmp_path):
    img = halves((255, 0, 0), (0, 0, 255))          # 20 wide, 10 high: red left
    exif = Image.Exif()
    exif[0x0112] = 6                                  # "rotate 90 CW to display"
    p = save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    arr = load_image(p, size=None)
    assert arr.shape == (20, 10, 3)                   # displayed upright: 10 wide, 20 high
    assert arr[2, 5, 0] > 200 and arr[2, 5, 2] < 60   # red ends up on top
    assert arr[17, 5, 2] > 200 and arr[17, 5, 0] < 60


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr16 = np.full((6, 6), 32768, dtype=np.uint16)
    arr16[:, 3:] = 65535
    p = save(Image.fromarray(arr16), tmp_path / "g16.png")
    assert Image.open(p).mode.startswith("I")
    out = load_image(p, size=None, channels=1)
    assert out[0, 0, 0] == 128 and out[0, 5, 0] == 255
    assert load_image(p, size=None, channels=3).shape == (6, 6, 3)


def test_palette_with_transparency_and_rgba_composite_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))              # fully transparent pixel
    out = load_image(save(rgba, tmp_path / "a.png"), size=None)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (255, 0, 0)
    pal = rgba.convert("P")
    pal.info["transparency"] = pal.getpixel((0, 0))
    p = save(pal, tmp_path / "p.png", transparency=pal.getpixel((0, 0)))
    assert Image.open(p).mode == "P"
    out = load_image(p, size=None)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[2, 2]) == (255, 0, 0)


def test_cmyk_jpeg_and_grayscale_and_gif_first_frame(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    p = save(cmyk, tmp_path / "c.jpg", quality=100)
    assert Image.open(p).mode == "CMYK"
    r, g, b = load_image(p, size=None)[4, 4]
    assert r > 220 and g < 40 and b < 40
    gray = load_image(save(Image.new("L", (5, 7), 77), tmp_path / "g.bmp"), size=None)
    assert gray.shape == (7, 5, 3) and (gray == 77).all()
    frames = [Image.new("RGB", (6, 6), c) for c in ((0, 255, 0), (255, 0, 0))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert load_image(p, size=None)[0, 0, 1] > 200      # first frame: green


def test_bytes_and_webp(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (9, 9), (0, 0, 255)).save(buf, "WEBP", lossless=True)
    out = load_image(buf.getvalue(), size=(4, 4), name="up.webp")
    assert out.shape == (4, 4, 3) and tuple(out[0, 0]) == (0, 0, 255)


@pytest.mark.parametrize("content,problem", [
    (b"this is not an image", "not an image"),
    (None, "truncated or corrupt"),
])
def test_bad_files_name_the_file(tmp_path, content, problem):
    p = tmp_path / "bad.jpg"
    if content is None:  # a real JPEG cut in half
        buf = io.BytesIO()
        Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    p.write_bytes(content)
    with pytest.raises(ImageError, match=rf"^{p}: {problem}"):
        load_image(p, size=(8, 8))


def test_unsupported_format_and_missing_file_and_pixel_limit(tmp_path):
    p = save(Image.new("RGB", (4, 4)), tmp_path / "x.tiff")
    with pytest.raises(ImageError, match="unsupported image format TIFF"):
        load_image(p, size=None)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png", size=None)
    big = save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="over the limit"):
        load_image(big, size=None, max_pixels=5000)
