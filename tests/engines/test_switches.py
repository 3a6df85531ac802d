"""The environment variables that switch the compiled kernels off."""

import pytest

from keras_indrnn import engines

VARIABLE = "KERAS_INDRNN_TEST_SWITCH"


@pytest.mark.parametrize(
    "value, off", [(None, False), ("", False), ("1", False), ("0", True)]
)
def test_zero_switches_off(monkeypatch, value, off):
    if value is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, value)
    assert engines.switched_off(VARIABLE) is off


@pytest.mark.parametrize("value", ["false", "off", "no", "2"])
def test_other_values_are_refused(monkeypatch, value):
    monkeypatch.setenv(VARIABLE, value)
    with pytest.raises(ValueError, match=f"{VARIABLE} must be 0 .* {value!r}"):
        engines.switched_off(VARIABLE)
