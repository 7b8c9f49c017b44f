graph [
 directed 1
 node [ id 0 Latitude 1 Longitude 2 ]
 node [ id 1 ]
 edge [ source 0 target 1 capacity 5 ]
 edge [ source 1 target 0 ]
]
