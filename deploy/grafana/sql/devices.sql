-- Dashboard variable "device": every device with a current state.
SELECT DISTINCT device FROM current_state ORDER BY 1
