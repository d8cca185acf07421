"""`pallet compose`: multi-container applications from Compose files, driven through the Engine API.

The package talks to palletd only through `pallet.api.client.Client` (DESIGN.md: compose ->
api client), so it would drive dockerd just the same. Modules, in the order a command uses them:

- `envfile`: `.env` / `env_file` parsing (dotenv syntax).
- `interpolate`: `${VAR}`, `${VAR:-default}`, `${VAR:?error}`... in every string of a file.
- `schema`: validation of the raw file, errors carrying the key path and the reason.
- `loader`: file lookup, YAML, interpolation, validation, normalisation to long forms,
  merging several `-f` files (Compose Specification merge rules), profiles, project name.
- `graph`: dependency order, cycles.
- `convert`: a service to a `POST /containers/create` body, names, labels, the config hash.
- `project`: the orchestration (up, down, ps, logs, start, stop, ...) over the API client.
"""
