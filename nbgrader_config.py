# nbgrader reads this file from the course root; the configuration lives in autograder/.
load_subconfig("autograder/nbgrader_config.py")  # noqa: F821
