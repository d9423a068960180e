"""bench/accuracy/build_set.py's rule for one wallpaper shipped for several screens: its sizes are one picture."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "accuracy"))
import build_set  # noqa: E402  (a bench script, not a package)


def _drawn(source: str, kind: str = "wallpaper") -> build_set.Decoded:
    package, _, relative = source.partition(":")
    candidate = build_set.Candidate(source, Path("/debs") / package / relative, kind)
    return build_set.Decoded(candidate=candidate, size=(1024, 768), pixel_sha=source.encode(),
                             thumb=np.zeros((48, 48, 3), np.uint8), std=0.0)


def test_one_wallpapers_screens_share_a_name_and_other_wallpapers_do_not():
    sway = "sway-backgrounds:usr/share/backgrounds/sway/Sway_Wallpaper_Blue_"
    names = {build_set.wallpaper_name(_drawn(sway + screen).candidate)
             for screen in ("1136x640.png", "1136x640_Portrait.png", "768x1024.png", "2048x1536_Portrait.png")}
    assert names == {"sway-backgrounds:usr/share/backgrounds/sway/Sway_Wallpaper_Blue"}
    elephants = "mate-backgrounds:usr/share/backgrounds/mate/abstract/Elephants"
    assert build_set.wallpaper_name(_drawn(elephants + ".jpg").candidate) == \
        build_set.wallpaper_name(_drawn(elephants + "_3840x2160.jpg").candidate)
    # colour variants of one photo and a dark and light pair are different pictures, hard negatives
    mate = "mate-backgrounds:usr/share/backgrounds/mate/desktop/Ubuntu-Mate-"
    gnome = "gnome-backgrounds:usr/share/backgrounds/gnome/adwaita-"
    assert len({build_set.wallpaper_name(_drawn(s).candidate)
                for s in (mate + "Cold-no-logo.png", mate + "Radioactive-no-logo.png", gnome + "d.webp",
                          gnome + "l.webp")}) == 4
    # the rule is the wallpapers' alone: an icon named like a size is not touched
    assert build_set.wallpaper_name(_drawn("papirus-icon-theme:usr/share/icons/a_16x16.svg", "icon_family").candidate) is None


def test_the_sizes_drawn_after_the_first_are_left_out_wherever_they_were_drawn():
    sway = "sway-backgrounds:usr/share/backgrounds/sway/Sway_Wallpaper_Blue_"
    drawn = [_drawn(sway + "768x1024.png"), _drawn("python3-skimage:skimage/data/astronaut.png", "photo"),
             _drawn(sway + "768x1024_Portrait.png"), _drawn("mate-backgrounds:usr/share/backgrounds/mate/nature/Aqua.jpg"),
             _drawn(sway + "1366x768.png")]
    assert build_set.other_screens(drawn) == {2, 4}
    assert build_set.other_screens(drawn[1:]) == {3}  # the portrait first: the landscapes after it go
