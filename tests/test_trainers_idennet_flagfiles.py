"""The IDEnNet flagfiles parse into the protocols they say (dataset, classes, budget, variants)."""

from pathlib import Path

import pytest
from absl import flags

from trainers import idennet as trainer
from flag_helpers import parsed_flags

FLAGFILES = Path(__file__).resolve().parents[1] / "trainers" / "flagfiles"


@pytest.mark.parametrize(
    "name, dataset, protocol, epochs, variants",
    [("idennet_ferplus", "ferplus", "ferplus8", (40, 20), []),
     # FER2013, original labels: the FER+ budget of the committed FER+ runs, Original beside F.
     ("idennet_fer2013", "fer2013", "fer2013", (30, 10), ["original", "f"]),
     ("idennet_ckplus", "ckplus48", "ck7", None, None)],
)
def test_flagfile_gives_its_protocol(tmp_path, name, dataset, protocol, epochs, variants):
    with parsed_flags("idennet", f"--flagfile={FLAGFILES / name}.flags",
                      f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
        parsed_variants = flags.FLAGS.variants
    assert (config.dataset, config.protocol, config.depth) == (dataset, protocol, 40)
    if epochs is not None:
        assert (config.pretrain_epochs, config.epochs) == epochs
    if variants is not None:
        assert parsed_variants == variants
    if not parsed_variants:
        assert config.variant == ("f" if dataset == "ferplus" else "if")
