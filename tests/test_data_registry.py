"""The one dataset registry: readers, experiments, trainers and the pipeline agree on it."""

import pytest

from keras_fer.data import readers, registry


def test_every_dataset_names_a_registered_reader_and_formats():
    for d in registry.REGISTRY.values():
        assert d.reader == "synthetic" or d.reader in readers.READERS, d
        assert d.reader in d.formats, d
        for fmt in d.formats:
            assert fmt == "synthetic" or fmt in readers.READERS, (d.name, fmt)
            assert registry.dataset_for_format(fmt) == d.name
    formats = [f for d in registry.REGISTRY.values() for f in d.formats]
    assert len(formats) == len(set(formats)), "a reader format maps to one dataset"


def test_registry_views():
    assert registry.DATASETS == ("synthetic", "ckplus48", "ckplus_neutral", "ferplus", "fer2013")
    assert registry.FIXED_SPLIT_DATASETS == ("ferplus", "fer2013")
    assert registry.DEFAULT_PROTOCOL == {"synthetic": "ck7", "ckplus48": "ck7",
                                         "ckplus_neutral": "ck8", "ferplus": "ferplus8",
                                         "fer2013": "fer2013"}
    assert registry.dataset_for_format("fer2013_csv") == "fer2013"
    assert registry.dataset_for_format("folder") is None
    with pytest.raises(ValueError, match="Unknown dataset 'mnist'"):
        registry.get("mnist")


def test_trainers_dataset_flag_is_the_registry():
    from trainers import common

    assert tuple(common.flags.FLAGS["dataset"].parser.enum_values) == registry.DATASETS


def test_pipeline_maps_formats_through_the_registry():
    from keras_fer.pipeline.pipeline import PipelineConfig, _trainer_dataset

    assert _trainer_dataset(PipelineConfig(dataset_format="fer2013_recovered")) == "fer2013"
    assert _trainer_dataset(PipelineConfig(dataset_format="synthetic")) == "synthetic"
    with pytest.raises(ValueError, match="no --dataset for dataset_format='folder'"):
        _trainer_dataset(PipelineConfig(dataset_format="folder"))
