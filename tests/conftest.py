"""Test session setup: JAX tests run on 8 host CPU devices (set before JAX is imported);
the order in which pytest-xdist hands tests to its workers."""

import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Rough cost in seconds of the slowest tests, longest first: CPU seconds measured per test
# (own and waited-for children, MPI ranks included), the torchrun and demo figures from idle
# runs. Only the order of the run depends on it: the workers take the costly tests first and
# the cheap ones fill in at the end, so both finish together. A test missing here keeps its
# place after these; a stale figure costs a little time, never a test.
COSTS = [
    (22, "test_torch.py::test_torchrun_8_ranks_equal_dtensor_block_by_block"),
    (15, "test_docs.py::test_python_blocks_run[docs/python.md#6]"),
    (15, "test_runtime.py::test_demo_runs"),
    (12, "test_pending_steps.py::test_runtime_sums_exactly_as_the_simulator_on_pending_problems[8"),
    (11, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[8-"),
    (8, "test_proofs.py::test_every_theorem_holds_at_small_bounds"),
    (8, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[6-small-chunks]"),
    (6, "test_synthesis.py::test_tight_shapes_still_correct_and_honest_about_memory"),
    (6, "test_docs.py::test_command_lines_run[redist regress --examples 20 --np 4 --seed 1]"),
    (5, "test_regress.py::test_command_runs_on_mpi_ranks_and_summarises"),
    (5, "test_docs.py::test_python_blocks_run[docs/python.md#2]"),
    (5, "test_docs.py::test_python_blocks_run[docs/pending.md#7]"),
    (5, "test_docs.py::test_python_blocks_run[docs/cross-mesh.md#6]"),
    (4, "test_synthesis.py::test_uneven_and_sub_axis_plans_are_correct_and_honest"),
    (4, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[4-packed]"),
    (4, "test_pending_steps.py::test_runtime_sums_exactly_as_the_simulator_on_pending_problems[4"),
    (4, "test_runtime.py::test_byte_accounting_counts_every_buffer_tracemalloc_sees"),
    (4, "test_uneven_cases.py::test_cases_run_on_mpi_ranks[8]"),
    (4, "test_cross_mpi.py::"),
    (4, "test_pending_steps.py::test_redistribute_takes_each_ranks_addend_and_matches_numpy"),
    (3, "test_proofs.py::test_t3u_catches_a_synthesizer_that_hides_a_missed_bound"),
    (3, "test_docs.py::test_command_lines_run[redist run --np"),
    (3, "test_docs.py::test_python_blocks_run[docs/python.md#4]"),
    (3, "test_docs.py::test_command_lines_run[redist audit"),
    (3, "test_runtime.py::test_the_launcher_never_initialises_mpi"),
    (3, "test_runtime.py::test_run_reports_time_volume_memory_and_match"),
    (3, "test_runtime.py::test_stopping_run_ends_the_ranks_and_removes_the_job_directory"),
    (3, "test_runtime.py::test_sigkill_of_run_ends_mpiexec_and_the_ranks_and_removes_the_job"),
    (2, "test_synthesis.py::test_sub_axis_problems_with_divisible_extents_get_normal_plans"),
    (2, "test_pinned.py::test_every_refuted_no_discard_names_a_real_discard"),
    (2, "test_synthesis.py::test_normal_plan_is_normal_form_within_bound_and_correct"),
    (2, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[2-derived]"),
    (2, "test_optimal.py::test_every_design_case_is_proved_optimal"),
    (2, "test_docs.py::test_command_lines_run[redist plan --mesh x=2,y=4 --shape 4096,4096 --sr"),
    (2, "test_planjson.py::test_round_trip"),
    (2, "test_jax.py::test_reshard_equals_device_put_on_random_problems"),
    (2, "test_jax_processes.py::"),
    (2, "test_dtensor.py::test_layout_of_a_real_dtensor"),
    (2, "test_regress.py::test_a_failure_is_shrunk_saved_replayable_and_replayed_first"),
    (1, "test_verify.py::test_one_exchange_is_proved_and_simulates_to_dst"),
    (1, "test_synthesis.py::test_naive_plan_is_correct"),
    (1, "test_certificate.py::test_cli_exit_codes"),
    (1, "test_docs.py::test_python_blocks_run[README.md#5]"),
    (1, "test_runtime_pairing.py::test_runtime_steps_equal_the_simulator_on_odd_meshes_and_unev"),
]


def _cost(nodeid: str) -> int:
    rel = nodeid.split("tests/", 1)[-1]
    return next((c for c, prefix in COSTS if rel.startswith(prefix)), 0)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Longest first (stable), and the tests of a module that share a module- or
    session-scoped fixture of ours in one xdist group: under `--dist loadgroup` one worker
    runs them, so the fixture (a theorem run, an MPI launch) is built once."""
    units: dict[str, list] = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        shared = info is not None and any(
            defs[-1].scope in ("module", "session") and "tests" in str(defs[-1].baseid)
            for name, defs in info.name2fixturedefs.items() if defs)
        key = f"{item.nodeid.split('::')[0]}-shared" if shared else item.nodeid
        if shared:
            item.add_marker(pytest.mark.xdist_group(key))
        units.setdefault(key, []).append(item)
    order = sorted(units.values(), key=lambda u: -sum(_cost(i.nodeid) for i in u))
    items[:] = [i for u in order for i in u]
