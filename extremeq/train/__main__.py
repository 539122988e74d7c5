from extremeq.train.main import __doc__, run  # noqa: F401  (absl prints this module's __doc__ for --help)

run()
