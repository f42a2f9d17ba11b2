import pytest

from edgedistill.models.builders import random_teacher, small_hubert_config


def test_a_random_teacher_by_shape_is_the_recipes_small_hubert_or_a_builtin():
    small = random_teacher("small:2x64x32")
    want = small_hubert_config(2, 64, 32)
    assert (small.config.num_hidden_layers, small.config.hidden_size, list(small.config.conv_dim)) == \
        (2, 64, list(want.conv_dim))
    assert random_teacher("builtin:hubert-tiny").config.model_type == "hubert"


def test_a_malformed_shape_says_how_to_write_it():
    with pytest.raises(ValueError, match="small:LAYERSxHIDDENxCNN"):
        random_teacher("small:6x256")
