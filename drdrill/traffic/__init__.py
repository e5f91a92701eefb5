"""Traffic: synthetic Locust users whose every request becomes an op in the run's history."""
