"""The component of the gates' closed branch: it records why training did not run.

The rule itself lives in `labelloop.gates` and is applied by the quality gate, whose `decision`
output the DAG compares; this component only passes the closed gate's outcome on, so the
branches can be joined for the report.
"""

from kfp import dsl

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_gate_decision(outcome: str) -> str:
    """Record why training did not run.

    Args:
        outcome: The closed gate's outcome JSON, from the quality gate.

    Returns:
        Output: The same JSON outcome `{trained: false, gate, rule, reason, value, threshold}`
            for the report.
    """
    import logging

    from labelloop.gates import read_outcome

    logging.getLogger("labelloop.gates").info("gate closed: %s", read_outcome(outcome)["reason"])
    return outcome


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def join_outcome(outcome: str) -> str:
    """Pass one of several branches' outcomes on (KFP cannot nest `dsl.OneOf`).

    Args:
        outcome: The outcome JSON of whichever branch ran.

    Returns:
        Output: The same JSON outcome.
    """
    return outcome
