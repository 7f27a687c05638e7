"""The load suite (bench/load*.py): its report logic, and a short run against a real router + runtime."""
