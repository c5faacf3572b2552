"""Test session setup: JAX tests run on 8 host CPU devices (set before JAX is imported);
the order in which pytest-xdist hands tests to its workers."""

import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Rough relative cost of the slowest tests (`--durations` seconds of a run under load / 8),
# longest first. Only the order of the run depends on it: the workers take the costly tests first
# and the cheap ones fill in at the end, so both finish together. A test missing here keeps
# its place after these; a stale figure costs a little time, never a test.
COSTS = [
    (34, "test_proofs.py::test_every_theorem_holds_at_small_bounds"),
    (23, "test_proofs.py::test_t1_harness_catches_an_unsound_source_map"),
    (23, "test_synthesis.py::test_tight_shapes_still_correct_and_honest_about_memory"),
    (17, "test_regress.py::test_a_failure_is_shrunk_saved_replayable_and_replayed_first"),
    (17, "test_synthesis.py::test_uneven_and_sub_axis_plans_are_correct_and_honest"),
    (14, "test_proofs.py::test_t3u_catches_a_synthesizer_that_hides_a_missed_bound"),
    (8, "test_runtime.py::test_demo_runs"),
    (8, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[8-derived]"),
    (8, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[8-packed]"),
    (7, "test_synthesis.py::test_sub_axis_problems_with_divisible_extents_get_normal_plans"),
    (7, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[6-small-chunks]"),
    (6, "test_pending_steps.py::test_runtime_sums_exactly_as_the_simulator_on_pending_problems["),
    (6, "test_torch.py::test_torchrun_8_ranks_equal_dtensor_block_by_block"),
    (6, "test_docs.py::test_command_lines_run[redist regress --examples 20 --np 4 --seed 1]"),
    (5, "test_pinned.py::test_every_refuted_no_discard_names_a_real_discard"),
    (5, "test_pending_steps.py::test_runtime_sums_exactly_as_the_simulator_on_pending_problems["),
    (5, "test_docs.py::test_python_blocks_run[docs/python.md#6]"),
    (5, "test_regress.py::test_command_runs_on_mpi_ranks_and_summarises"),
    (5, "test_synthesis.py::test_normal_plan_is_normal_form_within_bound_and_correct"),
    (4, "test_docs.py::test_command_lines_run[redist audit --mesh x=2,y=4 --shape 256,256 --src"),
    (4, "test_optimal.py::test_every_design_case_is_proved_optimal"),
    (4, "test_docs.py::test_command_lines_run[redist plan --mesh x=2,y=4 --shape 4096,4096 --sr"),
    (4, "test_docs.py::test_command_lines_run[redist audit --mesh x=2,y=4 --shape 64,64 --src '"),
    (4, "test_planjson.py::test_round_trip"),
    (4, "test_docs.py::test_python_blocks_run[docs/python.md#4]"),
    (3, "test_verify.py::test_one_exchange_is_proved_and_simulates_to_dst"),
    (3, "test_runtime.py::test_byte_accounting_counts_every_buffer_tracemalloc_sees"),
    (3, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[1-packed]"),
    (3, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[4-packed]"),
    (3, "test_runtime.py::test_runtime_equals_simulator_on_random_problems[2-derived]"),
    (3, "test_synthesis.py::test_naive_plan_is_correct"),
    (2, "test_dtensor.py::test_layout_of_a_real_dtensor"),
    (2, "test_optimal.py::test_without_a_timeout_no_clock_is_read_only_the_budget_bounds_the_so"),
    (2, "test_pending_steps.py::test_t1_the_reductions_are_sound_for_their_addend_maps_for_all_"),
    (2, "test_pending_steps.py::test_pure_pending_to_sharded_is_one_reduce_scatter_at_the_lower"),
    (2, "test_synthesis.py::test_never_more_volume_than_the_greedy_planner"),
    (2, "test_docs.py::test_command_lines_run[redist run --np 6 --mesh x=2@0,1 --dst-mesh dp=2,"),
    (2, "test_jax.py::test_reshard_equals_device_put_on_random_problems[Mesh]"),
    (2, "test_certificate.py::test_cli_exit_codes"),
    (2, "test_docs.py::test_python_blocks_run[README.md#5]"),
    (2, "test_verify.py::test_verify_agrees_with_simulator_on_uneven_extents_and_sub_axes"),
    (2, "test_runtime_pairing.py::test_runtime_steps_equal_the_simulator_on_odd_meshes_and_unev"),
    (2, "test_runtime.py::test_the_launcher_never_initialises_mpi"),
    (2, "test_optimal.py::test_optimal_never_worse_than_normal_and_verifies"),
    (2, "test_runtime.py::test_run_refuses_rank_count_before_launch"),
    (2, "test_verify.py::test_verify_agrees_with_simulator_and_typing"),
    (2, "test_pending_shapes.py::test_replicas_reduce_disjoint_parts_at_the_lower_bound"),
    (2, "test_synthesis.py::test_random_plans_simulate_to_their_final_layout"),
    (2, "test_docs.py::test_python_blocks_run[docs/python.md#7]"),
    (2, "test_pending_steps.py::test_random_pending_problems_get_proved_plans_within_the_bound"),
    (2, "test_regress.py::test_every_property_holds_on_random_problems"),
    (2, "test_verify.py::test_no_discard_one_chain_and_one_chain_per_slice_agree"),
    (2, "test_docs.py::test_command_lines_run[redist plan --mesh r=2,y=4 --shape 64,32 --src '["),
    (2, "test_optimal.py::test_cli_optimal_reports_what_was_proved"),
    (2, "test_jax.py::test_reshard_equals_device_put_on_random_problems[make_mesh]"),
    (1, "test_pending_shapes.py::test_runtime_holds_what_the_new_shapes_prove"),
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
