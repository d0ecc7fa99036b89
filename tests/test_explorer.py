"""The browser explorer: its actions against the Python API, its endpoints through gradio_client against a
launched server, bad input that leaves the server serving, and one page driven in headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny
from PIL import Image

import celebae

gr = pytest.importorskip("gradio", reason="needs celebae[app]")
gradio_client = pytest.importorskip("gradio_client", reason="needs celebae[app]")
from celebae.use.app import launch  # noqa: E402
from celebae.use.explorer import Explorer  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("explore")
    celebae.train(tiny(tmp, out=str(tmp / "conv")), progress=False)
    celebae.train(tiny(tmp, out=str(tmp / "pool"), model="pool", nf=4), progress=False)
    return [tmp / "conv", tmp / "pool"]


@pytest.fixture(scope="module")
def explorer(runs: list[Path]) -> Explorer:
    return Explorer(runs, limit=24)


@pytest.fixture(scope="module")
def server(explorer: Explorer):
    app, url = launch(explorer, port=None, block=False)
    yield url
    app.close()


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faces") / "face.png"
    Image.fromarray(celebae.data.draw_face(7, 3).transpose(1, 2, 0)).save(path)
    return path


def _png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.numpy().transpose(1, 2, 0)


def test_the_actions_match_the_python_api(explorer: Explorer, runs: list[Path], face: Path) -> None:
    run = celebae.load(runs[0], device="cpu")
    x, y = run.reconstruct(face)
    seen, out, heat, psnr, ssim, code = explorer.reconstruct(np.asarray(Image.open(face)), 0)
    assert np.array_equal(seen, x[0].numpy().transpose(1, 2, 0)) and np.array_equal(
        out, y[0].numpy().transpose(1, 2, 0)
    )
    assert heat.shape == seen.shape and 5 < psnr < 60 and -1 < ssim <= 1
    np.testing.assert_array_equal(code, run.encode(face)[0].numpy())
    grid = explorer.compare(None, 0, 4)
    assert grid.shape == (3 * 128 + 2 * 2, 4 * 128 + 3 * 2, 3)  # faces, conv, pool
    assert len(explorer.neighbours(explorer.face(5), 3)) == 3 and explorer.neighbours(explorer.face(5), 1)[0][
        1
    ].startswith(explorer.split.files[5])  # a face is its own nearest neighbour
    typical, unusual = explorer.anomalies(4)
    assert len(typical) == len(unusual) == 4 and typical[0][1] != unusual[0][1]
    mix, strip = explorer.interpolate(0, 1, 0.0, 4)
    assert strip.shape[1] == 6 * 128 + 5 * 2
    zero = run.decode(torch.from_numpy(explorer.codes[:1]))
    assert np.array_equal(mix, celebae.data.to_uint8(zero)[0].numpy().transpose(1, 2, 0))  # t = 0 is face A's code
    assert explorer.walk(0, 0, 0).shape == (128, 128, 3)
    assert not np.array_equal(explorer.walk(0, 0, 0), explorer.walk(3, 0, 0))


def test_the_endpoints_answer_like_the_api(server: str, explorer: Explorer, runs: list[Path], face: Path) -> None:
    client = gradio_client.Client(server, verbose=False, analytics_enabled=False)
    seen, out, heat, psnr, ssim, code_file, _plot = client.predict(
        gradio_client.handle_file(str(face)), 0, api_name="/reconstruct"
    )
    x, y = celebae.load(runs[0], device="cpu").reconstruct(face)
    assert np.array_equal(_png(seen), _hwc(x[0]))
    assert np.array_equal(_png(out), _hwc(y[0]))  # the reconstruction equals run.reconstruct's
    np.testing.assert_array_equal(np.load(code_file), celebae.load(runs[0], device="cpu").encode(face)[0].numpy())
    assert psnr == pytest.approx(explorer.reconstruct(np.asarray(Image.open(face)), 0)[3], abs=0.005)  # shown to 0.01
    pool = client.predict(gradio_client.handle_file(str(face)), 1, api_name="/reconstruct")
    assert np.array_equal(
        _png(pool[1]), celebae.load(runs[1], device="cpu").reconstruct(face)[1][0].numpy().transpose(1, 2, 0)
    )
    assert np.array_equal(_png(client.predict(3, api_name="/face")), explorer.face(3))
    assert np.array_equal(_png(client.predict(None, 0, 4, api_name="/compare")), explorer.compare(None, 0, 4))
    gallery = client.predict(gradio_client.handle_file(str(face)), 3, api_name="/neighbours")
    assert [g["caption"] for g in gallery] == [c for _, c in explorer.neighbours(np.asarray(Image.open(face)), 3)]
    typical, unusual = client.predict(2, api_name="/anomalies")
    assert [g["caption"] for g in unusual] == [c for _, c in explorer.anomalies(2)[1]]
    mix, strip = client.predict(0, 1, 0.5, api_name="/interpolate")
    assert np.array_equal(_png(mix), explorer.interpolate(0, 1, 0.5)[0])
    assert np.array_equal(
        _png(client.predict(*[1.0] * len(explorer.directions), api_name="/walk")),
        explorer.walk(*[1.0] * len(explorer.directions)),
    )


@pytest.mark.parametrize("kind", ["not an image", "greyscale", "tiny", "huge", "out of range"])
def test_bad_input_gives_a_message_and_the_server_keeps_serving(
    server: str, face: Path, tmp_path: Path, kind: str
) -> None:
    client = gradio_client.Client(server, verbose=False, analytics_enabled=False)
    path = tmp_path / "input.png"
    if kind == "not an image":
        path = tmp_path / "notes.png"
        path.write_text("these are not pixels")
    elif kind == "greyscale":
        Image.open(face).convert("L").save(path)
    elif kind == "tiny":
        Image.open(face).resize((9, 7)).save(path)
    elif kind == "huge":
        Image.new("RGB", (8000, 6000), (120, 90, 60)).save(path)
    if kind in ("not an image", "tiny", "huge", "out of range"):
        with pytest.raises(Exception, match="cannot identify image|too small|pixels; use one under|outside") as err:
            if kind == "out of range":
                client.predict(999, api_name="/face")
            else:
                client.predict(gradio_client.handle_file(str(path)), 0, api_name="/reconstruct")
        assert "Traceback" not in str(err.value)
    else:
        seen, out, *_ = client.predict(gradio_client.handle_file(str(path)), 0, api_name="/reconstruct")
        assert _png(out).shape == (128, 128, 3)
    seen, out, *_ = client.predict(gradio_client.handle_file(str(face)), 0, api_name="/reconstruct")  # still serving
    assert _png(out).shape == (128, 128, 3)


def test_the_page_in_a_browser(server: str, face: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (celebae[app] tests)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("needs Chromium (Debian's chromium package); playwright cannot download browsers here")
    shot = Path(os.environ.get("CELEBAE_SCREENSHOT") or tmp_path / "explorer.png")  # the README's: scripts/
    host = server.split("//")[1].split("/")[0]
    elsewhere = []
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
            )
        except Exception as err:  # no display libraries, a sandbox that refuses: say why
            pytest.skip(f"Chromium did not start: {str(err).splitlines()[0]}")
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on(
            "request",
            lambda r: None if host in r.url or r.url.startswith(("data:", "blob:")) else elsewhere.append(r.url),
        )
        page.goto(server, wait_until="networkidle")
        page.locator("input[type=file]").first.set_input_files(str(face))
        page.get_by_role("button", name="Reconstruct").click()
        # the upload, then the input as seen, the reconstruction and the error map arrive as served files
        page.wait_for_function("document.querySelectorAll('img[src*=\"gradio_api/file\"]').length >= 4", timeout=30_000)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert elsewhere == []  # nothing fetched from outside this machine
    assert Image.open(shot).size[0] == 1280


def _rgba_with_hidden_colour(path: Path) -> None:
    face = celebae.data.draw_face(2, 1).transpose(1, 2, 0)
    alpha = np.full(face.shape[:2] + (1,), 255, np.uint8)
    alpha[:40] = 0  # transparent rows whose colours are still in the file
    Image.fromarray(np.concatenate([face, alpha], axis=2), "RGBA").save(path)


@pytest.mark.parametrize("kind", ["16-bit grey", "gif", "rgba"])
def test_the_page_decodes_uploads_as_the_api_does(
    server: str, runs: list[Path], tmp_path: Path, face: Path, kind: str
) -> None:
    path = tmp_path / ("upload.gif" if kind == "gif" else "upload.png")
    if kind == "16-bit grey":
        grey = np.asarray(Image.open(face).convert("L"), np.uint16) * 257 // 2 + 1000
        Image.fromarray(grey.astype(np.uint16), "I;16").save(path)
    elif kind == "gif":
        Image.open(face).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    else:
        _rgba_with_hidden_colour(path)
    client = gradio_client.Client(server, verbose=False, analytics_enabled=False)
    seen, out, *_ = client.predict(gradio_client.handle_file(str(path)), 0, api_name="/reconstruct")
    x, y = celebae.load(runs[0], device="cpu").reconstruct(path)
    assert np.array_equal(_png(seen), _hwc(x[0])) and np.array_equal(_png(out), _hwc(y[0]))


def test_a_face_number_out_of_range_is_refused_everywhere(server: str) -> None:
    client = gradio_client.Client(server, verbose=False, analytics_enabled=False)
    for api, args in (("/face", (-1,)), ("/compare", (None, -5, 4)), ("/interpolate", (0, 10**6, 0.5))):
        with pytest.raises(Exception, match="outside the split"):
            client.predict(*args, api_name=api)


def test_concurrent_clients_get_every_answer_whole(server: str, explorer: Explorer) -> None:
    """Eight clients asking for the same faces at once: every answer arrives, whole and right (equal pictures
    were once written to one shared cache file while another client read it)."""
    from concurrent.futures import ThreadPoolExecutor

    expected = {i: explorer.face(i) for i in range(3)}

    def ask(worker: int) -> list[bool]:
        client = gradio_client.Client(server, verbose=False, analytics_enabled=False)
        return [np.array_equal(_png(client.predict(i % 3, api_name="/face")), expected[i % 3]) for i in range(6)]

    with ThreadPoolExecutor(8) as pool:
        answers = [ok for result in pool.map(ask, range(8)) for ok in result]
    assert len(answers) == 48 and all(answers)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width×height pixels and holds almost no data (a decoder would fail on it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


def test_huge_images_are_refused_from_the_header_and_uploads_are_bounded(
    server: str, explorer: Explorer, tmp_path: Path, face: Path
) -> None:
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 13000, 13000)
    assert bomb.stat().st_size < 1000
    with pytest.raises(celebae.CelebaeError, match="too large .*169,000,000 pixels"):  # not a decoder's error
        celebae.load(explorer.runs[0].path, device="cpu").images(bomb)
    client = gradio_client.Client(server, verbose=False, analytics_enabled=False)
    with pytest.raises(Exception, match="169,000,000 pixels; use one under"):
        client.predict(gradio_client.handle_file(str(bomb)), 0, api_name="/reconstruct")
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(30 << 20))  # over the upload limit: refused before it is kept
    with pytest.raises(Exception):  # noqa: B017 (gradio_client's own error for a refused upload)
        client.predict(gradio_client.handle_file(str(big)), 0, api_name="/reconstruct")
    assert not [p for p in explorer.uploads.rglob("*") if p.is_file() and p.stat().st_size > 25 << 20]
    seen, out, *_ = client.predict(gradio_client.handle_file(str(face)), 0, api_name="/reconstruct")  # still serving
    assert _png(out).shape == (128, 128, 3)


def test_the_explorer_leaves_no_files_and_warns_when_it_serves_every_interface(runs: list[Path], caplog) -> None:
    ex = Explorer(runs[:1], limit=4)
    app, _url = launch(ex, host="0.0.0.0", port=None, block=False)
    try:
        assert "anyone who can reach this machine" in caplog.text
        assert ex.out.is_dir()
    finally:
        app.close()
        ex.close()
    assert not ex.out.exists()
