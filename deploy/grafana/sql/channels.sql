-- Dashboard variable "channel": the numeric channels of the chosen devices.
SELECT DISTINCT channel FROM current_state WHERE device IN ($device) AND value IS NOT NULL ORDER BY 1
