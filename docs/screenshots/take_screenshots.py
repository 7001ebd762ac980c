"""Take the README screenshots from the real app against the built-in simulator.

Run under a virtual X server, from the repository root:

    xvfb-run -s "-screen 0 1600x1000x24" python docs/screenshots/take_screenshots.py

Writes main-window.png (light, mid-stream, 1400×900), main-window-dark.png, the same two at
600×700 (small-light.png, small-dark.png), retry-banner.png, settings.png, tool-card.png (a
reply that called ``mcp-server-time``, light), settings-tools.png, and the Auto shots
auto-stages.png (an answer being checked, with the Auto stage in the status bar) and
auto-route.png (the escalated answer, with the route in the reply's details), and the
attachment shots attachments.png (a sent prompt with its photo and notes, and the composer
holding an image chip and a text chip; light, 1400×900), attachments-dark.png and
attachments-small.png (600×700), and math.png and math-dark.png (a reply with inline and
display formulas) next to this file. Uses a throwaway RILL_HOME. ``--only auto-stages``
takes only the Auto shots, ``--only attachments`` only the attachment ones, ``--only math``
only the math ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent
HOME = Path(tempfile.mkdtemp(prefix="rill-shots-"))
os.environ["RILL_HOME"] = str(HOME)

from PySide6.QtWidgets import QApplication  # noqa: E402

from desktop_app.app import DemoSimulator  # noqa: E402
from desktop_app.core.chat import Services  # noqa: E402
from desktop_app.core.config import Config, Profile  # noqa: E402
from desktop_app.core.paths import app_paths  # noqa: E402
from desktop_app.core.routing.profile import AutoSettings, AutoTarget  # noqa: E402
from desktop_app.simulator import Fault  # noqa: E402
from desktop_app.ui import theme  # noqa: E402
from desktop_app.ui.event_loop import qt_event_loop  # noqa: E402
from desktop_app.ui.icon import app_icon  # noqa: E402
from desktop_app.ui.main_window import MainWindow, simulator_profile  # noqa: E402

FIRST = """/echo Here is a small Python function that counts words, with a test:

```python
from collections import Counter


def word_counts(text: str) -> Counter[str]:
    \"\"\"How often each word occurs, ignoring case.\"\"\"
    return Counter(word.lower() for word in text.split())


assert word_counts("the river the sea")["the"] == 2  # two of them
```

| input | result |
|---|---|
| `"a b a"` | `{"a": 2, "b": 1}` |
| `""` | `{}` |

- It reads the text **once**.
- Punctuation stays attached to words; strip it first if that matters.
"""


TOOL_PROMPT = 'What time is it in Tokyo? call get_current_time with {"timezone": "Asia/Tokyo"}'

EARLIER = (
    "Packing list for a sailing weekend",
    "Explain Rust lifetimes simply",
    "SQL: top customers by month",
)


async def until(predicate: Callable[[], bool], limit_s: float = 30.0) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 (polls widget state)
            await asyncio.sleep(0.05)


async def ask(window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    window.composer.submit()
    await until(lambda: window.controller.busy)


AUTO_QUESTION = "Write a Python function that merges two sorted lists, with a test."


async def auto_shots(app: QApplication) -> None:
    """An Auto profile over the simulator's two models; its judge gives sim-small 3/10 and
    sim-large 9/10, so the answer is escalated once."""
    demo = DemoSimulator(tokens_per_s=0)
    paths = app_paths().ensure()
    config = Config(path=paths.config_file)
    small = simulator_profile(demo.start())
    config.profiles[small.name] = small
    config.profiles["Strong"] = Profile(
        name="Strong", provider=small.provider, base_url=small.base_url, model="sim-large"
    )
    config.profiles["Auto"] = Profile(
        name="Auto",
        auto=AutoSettings(
            targets=(AutoTarget(small.name, 1), AutoTarget("Strong", 3)),
            validate=True,
            judge=small.name,
        ),
    )
    config.values["default_profile"] = "Auto"
    services = Services.open(config=config, paths=paths)
    theme.apply(app, "light")
    window = MainWindow(
        services, simulator=demo, demo=True, ephemeral={small.name, "Strong", "Auto"}
    )
    window.resize(1400, 900)
    window.show()
    await window.start()
    sim = demo._thread
    assert sim is not None
    sim.sim.judge_scores = {"sim-small": 3, "sim-large": 9}
    sim.default_tokens = 120
    window.new_chat()
    window.select_profile("Auto")
    sim.tokens_per_s = 400
    await ask(window, "What is a good name for a sailing boat?")
    await until(lambda: not window.controller.busy, 60)
    sim.tokens_per_s = 20
    await ask(window, AUTO_QUESTION)
    await until(lambda: window.status.text == "Auto · validating", 60)
    window.grab().save(str(OUT / "auto-stages.png"))
    sim.tokens_per_s = 0
    await until(lambda: not window.controller.busy, 60)
    await asyncio.sleep(0.6)
    window.grab().save(str(OUT / "auto-route.png"))
    window.close()
    await window.wait_closed()
    await services.aclose()
    demo.stop()


def harbour_photo(path: Path, size: tuple[int, int] = (1600, 1000)) -> Path:
    """A made-up photo: an evening sky over water, a sun and three sails."""
    from PIL import Image, ImageDraw

    width, height = size
    sky = Image.linear_gradient("L").resize((width, height))
    image = Image.merge(
        "RGB",
        (
            sky.point(lambda v: 255 - v // 3),
            sky.point(lambda v: 150 + v // 3),
            sky.point(lambda v: 120 + v // 2),
        ),
    )
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.62, height * 0.22, width * 0.74, height * 0.41), fill="#ffd27a")
    draw.rectangle((0, height * 0.62, width, height), fill="#23507a")
    for x in (0.18, 0.36, 0.5):
        mast = width * x
        draw.polygon(
            [(mast, height * 0.3), (mast, height * 0.6), (mast + width * 0.09, height * 0.6)],
            fill="#fbfbf5",
        )
        draw.rectangle((mast - 40, height * 0.6, mast + 160, height * 0.64), fill="#5b3a24")
    image.save(path, "JPEG", quality=88)
    return path


@contextlib.asynccontextmanager
async def simulator_window(app: QApplication, width: int, height: int) -> AsyncIterator[MainWindow]:
    """A light window of ``width`` × ``height`` over a simulator at full speed, started as
    ``rill --demo`` starts it, closed again (with its services and simulator) at the end."""
    demo = DemoSimulator(tokens_per_s=0)
    paths = app_paths().ensure()
    config = Config(path=paths.config_file)
    config.profiles["Simulator"] = simulator_profile(demo.start())
    services = Services.open(config=config, paths=paths)
    theme.apply(app, "light")
    window = MainWindow(services, simulator=demo, demo=True, ephemeral={"Simulator"})
    window.resize(width, height)
    window.show()
    try:
        await window.start()
        yield window
    finally:
        window.close()
        await window.wait_closed()
        await services.aclose()
        demo.stop()


async def attachment_shots(app: QApplication) -> None:
    """A prompt sent with a photo and notes, and the next one being written with an image
    and a log file attached."""
    async with simulator_window(app, 1400, 900) as window:
        files = HOME / "files"
        files.mkdir(exist_ok=True)
        photo = harbour_photo(files / "harbour at dusk.jpg")
        notes = files / "trip notes.md"
        notes.write_text(
            "# Sailing weekend\n\n- leave Friday 18:00\n- moor at the old harbour\n", "utf-8"
        )
        second = harbour_photo(files / "IMG_2041.jpg", (1200, 900))
        log_file = files / "engine.log"
        log_file.write_text("".join(f"12:{i:02d} rpm 2100 temp 78\n" for i in range(40)), "utf-8")
        window.new_chat()
        window.attach_files([str(photo), str(notes)])
        tray = window.composer.tray
        await until(lambda: len(window.composer.attachments()) == 2)
        await ask(window, "Which boats are in this photo? My notes for the trip are attached.")
        await until(lambda: not window.controller.busy, 60)
        await until(lambda: not tray.chips)
        window.attach_files([str(second), str(log_file)])
        await until(lambda: len(window.composer.attachments()) == 2)
        window.composer.set_text("And this one — is the engine log normal?")
        await asyncio.sleep(0.6)
        window.grab().save(str(OUT / "attachments.png"))
        window.resize(600, 700)
        await asyncio.sleep(0.6)
        window.grab().save(str(OUT / "attachments-small.png"))
        window.resize(1400, 900)
        window.services.config.values["ui.theme"] = "dark"
        window.apply_theme()
        await asyncio.sleep(0.6)
        window.grab().save(str(OUT / "attachments-dark.png"))


MATH = r"""/echo The roots of $ax^2+bx+c=0$ with $a \neq 0$ are

$$x = \frac{-b \pm \sqrt{b^2-4ac}}{2a}$$

and they are real when the discriminant $\Delta = b^2-4ac$ is at least $0$. For example,
$x^2-5x+6=0$ has $\Delta = 1$, so $x \in \{2, 3\}$.

The first $n$ squares add up to
\[
\sum_{k=1}^{n} k^2 = \frac{n(n+1)(2n+1)}{6},
\]
and the Gaussian integral is \(\int_{-\infty}^{\infty} e^{-x^2}\,dx = \sqrt{\pi}\).
A coffee costs $4 and a cake $5, so both cost $9."""


async def math_shots(app: QApplication) -> None:
    """A reply with inline and display formulas, light and dark."""
    from desktop_app.ui.math_render import renderer

    async with simulator_window(app, 1000, 720) as window:
        window.new_chat()
        await ask(window, "Solve a quadratic and sum some squares.")
        await until(lambda: not window.controller.busy, 60)
        await ask(window, MATH)
        await until(lambda: not window.controller.busy, 60)
        await until(lambda: not renderer().busy and not window.view.widgets[-1].rendering, 60)
        await asyncio.sleep(0.6)
        window.grab().save(str(OUT / "math.png"))
        window.services.config.values["ui.theme"] = "dark"
        window.apply_theme()
        await until(lambda: not renderer().busy and not window.view.widgets[-1].rendering, 60)
        await asyncio.sleep(0.6)
        window.grab().save(str(OUT / "math-dark.png"))
        window.services.config.values["ui.theme"] = "light"
        window.apply_theme()


async def main(app: QApplication) -> None:
    if "--only" in sys.argv and "auto-stages" in sys.argv:
        await auto_shots(app)
        return
    if "--only" in sys.argv and "math" in sys.argv:
        await math_shots(app)
        return
    if "--only" in sys.argv and "attachments" in sys.argv:
        await attachment_shots(app)
        return
    demo = DemoSimulator(tokens_per_s=40)
    paths = app_paths().ensure()
    config = Config(path=paths.config_file)
    config.profiles["Simulator"] = simulator_profile(demo.start())
    config.values["resilience.base_delay_s"] = 6.0
    config.values["resilience.max_delay_s"] = 8.0
    time_server = Path(sys.executable).with_name("mcp-server-time")
    config.mcp = {
        "servers": {
            "time": {
                "command": str(time_server) if time_server.exists() else sys.executable,
                "args": [] if time_server.exists() else ["-m", "mcp_server_time"],
                "tools": {"get_current_time": {"policy": "always"}},
            }
        }
    }
    services = Services.open(config=config, paths=paths)
    theme.apply(app, "light")
    window = MainWindow(services, simulator=demo, demo=True, ephemeral={"Simulator"})
    window.resize(1400, 900)
    window.show()
    await window.start()
    sim = demo._thread
    assert sim is not None

    sim.tokens_per_s = 0
    for title in EARLIER:
        window.new_chat()
        await ask(window, title)
        await until(lambda: not window.controller.busy, 60)
    window.new_chat()
    sim.tokens_per_s = 400
    await ask(window, "Tell me about rivers and bridges")
    await until(lambda: not window.controller.busy, 60)
    await ask(window, FIRST)
    await until(lambda: not window.controller.busy, 60)
    sim.tokens_per_s = 40
    await ask(window, "And what about old harbour towns?")
    await until(lambda: len(window.view.widgets[-1].text()) > 380, 60)
    window.grab().save(str(OUT / "main-window.png"))
    window.resize(600, 700)
    await asyncio.sleep(0.6)
    window.grab().save(str(OUT / "small-light.png"))

    window.services.config.values["ui.theme"] = "dark"
    window.apply_theme()
    await asyncio.sleep(0.6)
    window.grab().save(str(OUT / "small-dark.png"))
    window.resize(1400, 900)
    await asyncio.sleep(0.6)
    window.grab().save(str(OUT / "main-window-dark.png"))
    window.controller.stop()
    await until(lambda: not window.controller.busy)

    window.services.config.values["ui.theme"] = "light"
    window.apply_theme()
    sim.script(Fault(status=503))
    await ask(window, "Is the server awake?")
    await until(lambda: window.banner.isVisible())
    await asyncio.sleep(1.2)
    window.grab().save(str(OUT / "retry-banner.png"))
    await until(lambda: not window.controller.busy, 60)

    window.open_settings()
    dialog = window.settings_dialog
    assert dialog is not None
    dialog.test_connection()
    await until(lambda: dialog.test_result.text().startswith(("✓", "✗")))
    await asyncio.sleep(0.3)
    dialog.grab().save(str(OUT / "settings.png"))
    dialog.close()

    window.new_chat()
    sim.tokens_per_s = 200
    sim.default_tokens = 24
    await ask(window, TOOL_PROMPT)
    await until(lambda: not window.controller.busy, 60)
    await asyncio.sleep(0.5)
    window.grab().save(str(OUT / "tool-card.png"))

    window.open_settings("Tools")
    dialog = window.settings_dialog
    assert dialog is not None
    dialog.resize(900, 700)
    page = dialog.tools_page
    page.test_selected()
    await until(lambda: page.state_label.text().startswith(("Ready", "Failed")), 30)
    await asyncio.sleep(0.3)
    dialog.grab().save(str(OUT / "settings-tools.png"))
    dialog.close()

    window.close()
    await window.wait_closed()
    await services.aclose()
    demo.stop()
    await auto_shots(app)
    await attachment_shots(app)
    await math_shots(app)


def run() -> None:
    app = QApplication(sys.argv)
    app.setQuitOnLastWindowClosed(False)
    app.setWindowIcon(app_icon())
    loop = qt_event_loop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(main(app))
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    run()
