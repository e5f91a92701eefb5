"""The ``drdrill`` subcommands, one module each; :mod:`drdrill.cli` builds the parser and runs them.

Each module has ``add_parser(subcommands)`` (its argparse subcommand, with ``run`` as its default)
and ``run(args) -> int`` (the exit code, :mod:`drdrill.exitcodes`):

``check``     re-judge stored run directories offline
``drill``     run Gherkin drills against a target, print the verdicts, build the reports
``validate``  check features without running them
``report``    rebuild the DR test report and the Allure HTML from stored runs
``steps``     the reference of every Gherkin step
``runbook``   confirm the manual runbook steps of a running drill; list the runbook
``mirror``    the local mirror: up, down, status (:mod:`drdrill.mirror.cli`)

:mod:`drdrill.commands.session` is the pytest session ``drill`` and ``validate`` run in.
"""

COMMANDS = ("check", "drill", "validate", "report", "steps", "mirror", "runbook")  # in --help order
