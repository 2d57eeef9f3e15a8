"""Callback of the "measure" job: only CT series, and pass the threshold on."""


def wants_ct(jobName, headers, params, added_params, **kwargs):
    if headers.get("Modality") != "CT":
        return False
    return True, {"threshold": params["bone_hu"]}
