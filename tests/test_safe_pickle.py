"""The restricted unpickler: rebuilds MANO-style and HO3D-style pickles, refuses code."""
from __future__ import annotations

import builtins
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from hfl_lite.safe_pickle import UnsafePickleError, safe_load


# ------------------------------------------------------------------ a fake chumpy
def _install_fake_chumpy(monkeypatch):
    """Modules named like chumpy's, with classes that pickle their state as chumpy does."""

    class Ch:
        dterms = ("x",)

        def __init__(self, x=None, **terms):
            if x is not None:
                self.x = np.asarray(x, dtype=np.float64)
            for k, v in terms.items():
                setattr(self, k, v)
            self._dirty_vars = {"x"}
            self._parents = object()  # chumpy drops these unpicklable members in __getstate__
            self._cache = object()

        def __getstate__(self):
            state = dict(self.__dict__)
            del state["_parents"], state["_cache"]
            return state

    class add(Ch):  # noqa: N801  (chumpy's class names)
        pass

    class transpose(Ch):  # noqa: N801
        pass

    class Select(Ch):
        pass

    modules = {}
    for name, classes in {"chumpy": [], "chumpy.ch": [Ch], "chumpy.ch_ops": [add],
                          "chumpy.reordering": [transpose, Select]}.items():
        module = types.ModuleType(name)
        for cls in classes:
            cls.__module__ = name
            cls.__qualname__ = cls.__name__
            setattr(module, cls.__name__, cls)
        modules[name] = module
        monkeypatch.setitem(sys.modules, name, module)
    return modules


def _mano_like(ch_mod, ops_mod, reo_mod, rng):
    Ch = ch_mod.Ch
    shapedirs = rng.normal(size=(778, 3, 10))
    j_dense = np.zeros((16, 778))
    j_dense[np.arange(16), rng.integers(0, 778, 16)] = 1.0
    v = rng.normal(size=(778, 3))
    raw = {
        "v_template": v,
        "shapedirs": Ch(shapedirs),
        "posedirs": rng.normal(size=(778, 3, 135)),
        "J_regressor": sp.csc_matrix(j_dense),
        "weights": rng.random((778, 16)),
        "kintree_table": np.array([[4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], range(16)]),
        "f": rng.integers(0, 778, (1538, 3)).astype(np.uint32),
        "hands_components": rng.normal(size=(45, 45)),
        "hands_mean": rng.normal(size=45),
        "J": ops_mod.add(a=Ch(v[:16]), b=Ch(np.ones((16, 3)))),
        "vt": reo_mod.transpose(a=Ch(v[:4]), axes=(1, 0)),
        "sel": reo_mod.Select(a=Ch(v), idxs=np.array([0, 5, 7]), preferred_shape=(3,)),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }
    expected = {**raw, "shapedirs": shapedirs, "J": v[:16] + 1, "vt": v[:4].T, "sel": v.ravel()[[0, 5, 7]]}
    return raw, expected


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_mano_structure_with_chumpy_objects(monkeypatch, protocol):
    rng = np.random.default_rng(0)
    modules = _install_fake_chumpy(monkeypatch)
    raw, expected = _mano_like(modules["chumpy.ch"], modules["chumpy.ch_ops"], modules["chumpy.reordering"], rng)
    blob = pickle.dumps(raw, protocol=protocol)
    for name in modules:  # the loader must not need chumpy
        monkeypatch.delitem(sys.modules, name)
    assert b"chumpy" in blob
    out = safe_load(blob, what="MANO asset")
    assert set(out) == set(expected)
    for key, value in expected.items():
        if sp.issparse(value):
            assert sp.issparse(out[key]) and out[key].format == "csc"
            np.testing.assert_array_equal(out[key].toarray(), value.toarray())
        elif isinstance(value, np.ndarray):
            assert isinstance(out[key], np.ndarray), key
            np.testing.assert_array_equal(out[key], value, err_msg=key)
        else:
            assert out[key] == value
    assert "chumpy" not in sys.modules


def test_shared_objects_stay_shared_and_py2_names(monkeypatch):
    """One chumpy object referenced twice is rebuilt once; Python 2 names (copy_reg, __builtin__) work."""
    modules = _install_fake_chumpy(monkeypatch)
    shared = modules["chumpy.ch"].Ch(np.arange(3.0))
    blob = pickle.dumps({"a": shared, "b": [shared], "s": {1, 2}}, protocol=2)
    assert b"__builtin__" in blob or b"builtins" in blob
    for name in modules:
        monkeypatch.delitem(sys.modules, name)
    out = safe_load(blob)
    assert out["a"] is out["b"][0]
    np.testing.assert_array_equal(out["a"], [0.0, 1.0, 2.0])
    assert out["s"] == {1, 2}


def test_unknown_chumpy_class_is_a_clear_error(monkeypatch):
    modules = _install_fake_chumpy(monkeypatch)

    class Weird(modules["chumpy.ch"].Ch):
        pass

    Weird.__module__, Weird.__qualname__ = "chumpy.ch", "Weird"
    modules["chumpy.ch"].Weird = Weird
    blob = pickle.dumps({"w": Weird(np.zeros(2))}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="chumpy.ch.Weird"):
        safe_load(blob)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_ho3d_style_meta(tmp_path, protocol):
    meta = {"camMat": np.eye(3, dtype=np.float32), "handPose": np.linspace(-1, 1, 48), "handBeta": np.zeros(10),
            "handTrans": np.array([0.1, -0.2, 0.5]), "objName": "006_mustard_bottle", "objLabel": np.int64(5),
            "handJoints3D": None, "score": np.float32(0.5), "flags": (True, 1, 2.5, b"\x00\xff")}
    path = tmp_path / "0000.pkl"
    path.write_bytes(pickle.dumps(meta, protocol=protocol))
    out = safe_load(path, what="HO3D meta file")
    for key, value in meta.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(out[key], value)
            assert out[key].dtype == value.dtype and out[key].flags.writeable
        else:
            assert out[key] == value and type(out[key]) is type(value)
    with open(path, "rb") as f:  # file objects too
        assert safe_load(f)["objName"] == "006_mustard_bottle"


# ------------------------------------------------------------------ refusing code
class _Payload:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(target):
    return {
        "system": _Payload(os.system, f"touch {target}"),
        "eval": _Payload(builtins.eval, f"open({str(target)!r}, 'w').close()"),
        "subprocess": _Payload(subprocess.call, ["touch", str(target)]),
        "exec": _Payload(builtins.exec, f"open({str(target)!r}, 'w').close()"),
    }


@pytest.mark.parametrize("kind", ["system", "eval", "subprocess", "exec"])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_refuses_code_execution(tmp_path, kind, protocol):
    target = tmp_path / "pwned"
    payload = _payloads(target)[kind]
    blob = pickle.dumps({"v_template": np.zeros(3), "evil": [payload]}, protocol=protocol)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(blob)
    with pytest.raises(UnsafePickleError) as info:
        safe_load(path, what="MANO asset")
    message = str(info.value)
    assert payload.fn.__name__ in message and str(path) in message
    assert isinstance(info.value, pickle.UnpicklingError)
    assert not target.exists()
    # The same with plain pickle would have run the command (shows the test payload is live).
    if kind == "eval":
        pickle.loads(blob)
        assert target.exists()


def test_refuses_other_globals_and_misuse():
    with pytest.raises(UnsafePickleError, match="builtins.getattr"):
        safe_load(pickle.dumps(_Payload(getattr, "os", "system")))
    with pytest.raises(UnsafePickleError, match="numpy.load"):
        safe_load(pickle.dumps(_Payload(np.load, "x.npy")))
    # An allowed reconstructor asked to build something other than an ndarray (hand-written
    # protocol-0 pickle: numpy._core.multiarray._reconstruct(numpy.dtype, (0,), "b")).
    blob = b"cnumpy._core.multiarray\n_reconstruct\n(cnumpy\ndtype\n(I0\ntVb\ntR."
    with pytest.raises(pickle.UnpicklingError, match="only numpy.ndarray"):
        safe_load(blob)


# ------------------------------------------------------------------ unreadable files
def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope" / "MANO_LEFT.pkl"
    with pytest.raises(FileNotFoundError, match="MANO_LEFT.pkl"):
        safe_load(missing, what="MANO asset")
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pickle.dumps({"a": np.arange(100)}, protocol=2)[:50])
    with pytest.raises(pickle.UnpicklingError, match="cut.pkl") as info:
        safe_load(truncated, what="HO3D meta file")
    assert not isinstance(info.value, UnsafePickleError) and "HO3D meta file" in str(info.value)
    garbage = tmp_path / "text.pkl"
    garbage.write_text("not a pickle at all")
    with pytest.raises(pickle.UnpicklingError, match="text.pkl"):
        safe_load(garbage)
    with pytest.raises(TypeError, match="source"):
        safe_load(12)
