"""Device meshes and shardings, declared from the config.

`config.mesh` is a sequence of (axis_name, size) with at most one size -1
("all remaining devices"), e.g. (("data", -1),) or (("data", 4), ("model", 2)).
The batch is sharded over every data-parallel axis present ("data", "fsdp").
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXES = ("data", "fsdp")


def mesh_shape(mesh_config: Sequence[Sequence[Any]],
               num_devices: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Resolves -1 in the config to the remaining device count."""
  names = tuple(str(n) for n, _ in mesh_config)
  sizes = [int(s) for _, s in mesh_config]
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh {mesh_config}: at most one axis may be -1.")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(f"config.mesh {mesh_config}: {num_devices} devices do "
                       f"not divide by the fixed axes' product {known}.")
    sizes[sizes.index(-1)] = num_devices // known
  if math.prod(sizes) != num_devices:
    raise ValueError(f"config.mesh {mesh_config} has {math.prod(sizes)} "
                     f"devices but {num_devices} are available; use -1 for "
                     "one axis to absorb the rest.")
  return names, tuple(sizes)


def make_mesh(mesh_config: Sequence[Sequence[Any]],
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh with Auto axis types (jax 0.10 defaults to Explicit)."""
  devices = list(devices if devices is not None else jax.devices())
  names, sizes = mesh_shape(mesh_config, len(devices))
  return jax.make_mesh(sizes, names, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(names))


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
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}
