"""Callback of the "mask" job: runs when "measure" passed a threshold on."""


def after_measure(jobName, headers, params, added_params, **kwargs):
    return "threshold" in added_params.get("measure", {})
