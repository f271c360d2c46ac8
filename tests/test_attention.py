import pytest
from PIL import Image

from synesthesia.attention import find_cjk_font, save_attention_maps
from synesthesia.errors import ConfigError
from tests.conftest import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", ["床前明月光，疑是地上霜。 moonlight"],
                                languages=["zh"], forms=["五绝"], block_size=16, n_layer=2, n_head=3, n_embd=24)


def test_all_layers_and_heads(tmp_path, checkpoint):
    paths = save_attention_maps(checkpoint, "床前明月光", tmp_path / "maps", language="zh", form="五绝")
    assert [p.name for p in paths] == [f"layer{layer}_head{h}.png" for layer in range(2) for h in range(3)]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted(p.name for p in paths)
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG"
            # Scaled to the token count (<bos><lang:zh><form:五绝><sep> + 5 characters), and not blank.
            assert image.size[0] >= 400 and len(image.convert("L").getcolors(1 << 16)) > 20


def test_one_layer_or_one_head(tmp_path, checkpoint):
    assert [p.name for p in save_attention_maps(checkpoint, "moon", tmp_path, layer=1, head=2)] == ["layer1_head2.png"]
    assert [p.name for p in save_attention_maps(checkpoint, "moon", tmp_path / "h", head=0)] == [
        "layer0_head0.png", "layer1_head0.png"]
    assert len(save_attention_maps(checkpoint, "moon", tmp_path / "l", layer=0)) == 3


def test_each_picture_draws_its_own_head(tmp_path, checkpoint):
    paths = save_attention_maps(checkpoint, "明月光", tmp_path, layer=0)
    pixels = [Image.open(p).convert("RGB").tobytes() for p in paths]
    assert len(set(pixels)) == 3  # random weights: every head attends differently


def test_long_text_is_cut_to_the_context(tmp_path, checkpoint):
    with pytest.warns(UserWarning, match="last 16"):
        paths = save_attention_maps(checkpoint, "月" * 40, tmp_path, layer=0, head=0)
    assert paths[0].exists()


def test_bad_layer_or_head(tmp_path, checkpoint):
    with pytest.raises(ConfigError, match="layer 2 does not exist.*0 to 1"):
        save_attention_maps(checkpoint, "moon", tmp_path, layer=2)
    with pytest.raises(ConfigError, match="head 5"):
        save_attention_maps(checkpoint, "moon", tmp_path, head=5)


def test_cjk_font_is_found():
    font = find_cjk_font()
    if font is None:
        pytest.skip("no CJK font installed (scripts/bootstrap.sh installs fonts-wqy-zenhei)")
    from matplotlib.ft2font import FT2Font

    assert FT2Font(font).get_char_index(ord("月")) != 0
