"""Generated gRPC code for the shoal.v1 API (`make proto`); never edited by hand."""
