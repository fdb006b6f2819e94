"""The seed chapter's five tutorial chains (2a–2e), verbatim, and the demo that runs them on
generated archives in a folder laid out like the tutorial's (`archives/`, `frames/`, `results/`)."""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

CHAINS = ("2a", "2b", "2c", "2d", "2e")

log = logging.getLogger("imalys_stac.demo")


def chain_text(tag: str) -> str:
    """The chain as the seed chapter prints it."""
    return resources.files(__package__).joinpath(f"chain{tag}.txt").read_text(encoding="utf-8")


def localise(text: str, root: Path) -> str:
    """Only the paths change: the tutorial's `~/ESIS` becomes `root`, and its working directory
    `~/.imalys` a folder inside `root`, so the demo never touches the user's home."""
    root = Path(root).absolute()
    return text.replace("~/ESIS/.imalys", str(root / ".imalys-catalog")).replace("~/ESIS", str(root)).replace(
        "~/.imalys", str(root / ".imalys")
    )


def write_chains(root: Path) -> dict[str, Path]:
    folder = Path(root) / "chains"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for tag in CHAINS:
        path = folder / f"chain{tag}.txt"
        path.write_text(localise(chain_text(tag), root), encoding="utf-8")
        out[tag] = path
    # Beyond the seed: quicklooks of both composites (export picks the format from the ending).
    for season, after in (("summer", "2b"), ("autumn", "2e")):
        path = folder / f"quicklook_{season}.txt"
        path.write_text(
            f"IMALYS [demo: quicklook of the {season} composite, run after {after}]\n"
            f"home\n\tdirectory = {Path(root).absolute() / '.imalys'}\n\tlog = {Path(root).absolute() / 'results'}\n"
            f"export\n\tselect = bestof\n\ttarget = {Path(root).absolute() / 'results'}/bestof_{season}.png\n",
            encoding="utf-8",
        )
        out[f"quicklook_{season}"] = path
    return out


def run_demo(root: Path, size: int = 384, seed: int = 0) -> list[Path]:
    """Generate the tutorial's archives and frames, then run 2a, 2b, 2c, 2d, 2e in the seed's order."""
    from ..chain import load_chain
    from ..commands import run_chain
    from ..synth import write_tutorial_collection

    root = Path(root).absolute()
    results = [root / "results" / n for n in ("bestof_summer.tif", "bestof_autumn.tif", "bestof_summer.png", "bestof_autumn.png")]
    _refuse_foreign_results(results)
    log.info("demo: generating tutorial archives (%d px scenes) in %s", size, root)
    write_tutorial_collection(root, size=size, seed=seed)
    chains = write_chains(root)
    order = ["2a", "2b", "quicklook_summer", "2c", "2d", "2e", "quicklook_autumn"]
    for tag in order:
        log.info("demo: running %s", chains[tag])
        run_chain(load_chain(chains[tag]))
    return results


def _refuse_foreign_results(results: list[Path]) -> None:
    """Before any work: the demo's exports would refuse files it did not write (a user's own
    `results/bestof_summer.tif`) only after a minute of work; say so at once."""
    from ..chain import ChainError
    from ..commands.export import companion_paths, item_path_for, written_by_us

    for target in results:
        for path in (*companion_paths(target), item_path_for(target)):
            if path.exists() and not written_by_us(target):
                raise ChainError(f"{path} exists and was not written by imalys-stac; the demo would replace it",
                                 hint="choose another demo folder, or move that file away")
