"""Redis: hot reads (version-compared writes) and pub/sub notifications."""
