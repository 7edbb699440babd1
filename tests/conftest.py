"""Shared fixtures: the bundled sample portraits, enrolled once per test session."""

from __future__ import annotations

import pytest

from vcam.assets import ASSETS_DIR

@pytest.fixture(scope="session", autouse=True)
def private_user_config(tmp_path_factory):
    """Every test (and every ``vcam`` it starts) sees a user config folder of its own, so the
    Content Credentials key that renders make never lands in the real one; its config.toml
    only renames the virtual microphone."""
    patch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("user-config") / "vcam"
    # VCAM_CONFIG_DIR, not XDG_CONFIG_HOME: PulseAudio's clients find their server (and its
    # cookie) under XDG_CONFIG_HOME, and the audio tests must reach the running one
    patch.setenv("VCAM_CONFIG_DIR", str(home))
    # the daemons the tests start publish their microphone under a name of their own, so a
    # vcam running on the developer's desktop keeps "vcam_mic"
    home.mkdir()
    (home / "config.toml").write_text('[mic]\nname = "vcam_test_mic"\ndescription = "vcam test microphone"\n')
    yield
    patch.undo()


SAMPLE_PHOTOS = {
    "painting": ASSETS_DIR / "painting_thomas_jefferson_rembrandt_peale.jpg",
    "astronaut": ASSETS_DIR / "photo_astronaut_eileen_collins.png",
    "beard_bw": ASSETS_DIR / "photo_abraham_lincoln_beard_bw.jpg",
}


@pytest.fixture(scope="session")
def sample_portraits(tmp_path_factory):
    """``{name: Portrait}`` for the three bundled portraits (a private avatar cache)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("VCAM_CACHE_DIR", str(tmp_path_factory.mktemp("portrait-cache")))
    from vcam.avatar.enroll import enroll

    try:
        yield {name: enroll(path) for name, path in SAMPLE_PHOTOS.items()}
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def sample_avatars(sample_portraits):
    """``{name: Avatar}``: the rig of each sample portrait."""
    from vcam.avatar.rig import build_rig

    return {name: build_rig(p.image, p.landmarks, p.person_mask, p.plate) for name, p in sample_portraits.items()}
