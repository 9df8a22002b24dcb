"""Device meshes and shardings, declared from the config.

`config.mesh` is a sequence of (axis_name, size) with at most one size -1
("all remaining devices"), e.g. (("data", -1), ("fsdp", 1), ("model", 1)) or
(("data", 2), ("fsdp", 2), ("model", 2)). The batch is sharded over every
data-parallel axis present ("data", "fsdp").

Parameters carry logical axis names (`crossscale.models.layers`);
`config.sharding.rules` maps each logical name to mesh axes (`RULES` is the
default: FSDP over model widths, tensor parallelism over heads and MLP
features). A dimension that does not divide by its mesh axes, or whose mesh
axis an earlier dimension already took, is replicated, so any model runs on
any mesh.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

DATA_AXES = ("data", "fsdp")

# logical axis -> mesh axes (None: replicated). See crossscale.models.layers.
RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("conv_in", "fsdp"),
    ("mlp", "model"),
    ("heads", "model"),
    ("conv_out", "model"),
    ("embed_in", "model"),
    ("embed_out", "model"),
    ("kv", None),
    ("norm", None),
    ("tokens", None),
)


def mesh_shape(
    mesh_config: Sequence[Sequence[Any]], num_devices: int
) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Resolves -1 in the config to the remaining device count."""
  names = tuple(str(n) for n, _ in mesh_config)
  sizes = [int(s) for _, s in mesh_config]
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh {mesh_config}: at most one axis may be -1.")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(
          f"config.mesh {mesh_config}: {num_devices} devices do "
          f"not divide by the fixed axes' product {known}."
      )
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(
        f"config.mesh {mesh_config} has {math.prod(sizes)} "
        f"devices but {num_devices} are available; use -1 for "
        "one axis to absorb the rest."
    )
  return names, tuple(sizes)


def make_mesh(
    mesh_config: Sequence[Sequence[Any]],
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
  """A mesh with Auto axis types (jax 0.10 defaults to Explicit)."""
  devices = list(devices if devices is not None else jax.devices())
  names, sizes = mesh_shape(mesh_config, len(devices))
  return jax.make_mesh(
      sizes,
      names,
      devices=devices,
      axis_types=(jax.sharding.AxisType.Auto,) * len(names),
  )


def data_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in DATA_AXES if a in mesh.axis_names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension over the data-parallel axes."""
  return NamedSharding(mesh, P(data_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_parallel_size(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in data_axes(mesh))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This host's slice of a batch -> global arrays sharded on the data axes."""
  sharding = batch_sharding(mesh)
  return {
      k: jax.make_array_from_process_local_data(sharding, v)
      for k, v in batch.items()
  }


def _as_tuple(axes) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


def logical_to_spec(
    names: Sequence[str | None] | None,
    shape: Sequence[int],
    mesh: Mesh,
    rules=RULES,
) -> P:
  """Mesh PartitionSpec of one array from its logical axis names.

  Mesh axes absent from the mesh or of size 1 are dropped; a dimension not
  divisible by the product of its mesh axes, or wanting an axis an earlier
  dimension took, is replicated.
  """
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for dim, name in zip(shape, names or (None,) * len(shape)):
    if name is not None and name not in table:
      raise ValueError(
          f"logical axis {name!r} has no rule in "
          f"config.sharding.rules (known: {sorted(table)})"
      )
    axes = tuple(
        a
        for a in _as_tuple(table.get(name))
        if a in mesh.shape and mesh.shape[a] > 1 and a not in used
    )
    if axes and dim % math.prod(mesh.shape[a] for a in axes) == 0:
      used.update(axes)
      spec.append(axes[0] if len(axes) == 1 else axes)
    else:
      spec.append(None)
  return P(*spec)


def tree_shardings(boxed_abstract: Any, mesh: Mesh, rules=RULES) -> Any:
  """NamedShardings for a tree whose leaves may be linen `Partitioned` boxes
  (e.g. `jax.eval_shape` of an init returning boxed params and optimizer
  state). Unboxed leaves are replicated. Returns the unboxed tree's shape."""
  # Frozen parameters (optax.multi_transform / masked) leave boxes around an
  # empty `MaskedNode` in the optimizer state: drop those boxes first.
  boxed_abstract = jax.tree.map(
      lambda x: x.value
      if isinstance(x, nn.Partitioned) and not jax.tree.leaves(x.value)
      else x,
      boxed_abstract,
      is_leaf=lambda x: isinstance(x, nn.Partitioned),
  )
  specs = nn.get_partition_spec(boxed_abstract)
  shapes = nn.meta.unbox(boxed_abstract)
  return jax.tree.map(
      lambda spec, x: NamedSharding(
          mesh, logical_to_spec(tuple(spec), x.shape, mesh, rules)
      ),
      specs,
      shapes,
      is_leaf=lambda v: isinstance(v, P),
  )


def per_device_bytes(tree: Any, shardings: Any) -> int:
  """Bytes one device holds of `tree` (arrays or ShapeDtypeStructs) under
  `shardings` (the largest shard per leaf)."""
  return sum(
      math.prod(sh.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize
      for x, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings))
  )
